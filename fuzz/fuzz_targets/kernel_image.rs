//! Any bytes as a kernel image, through every boot protocol: detection, validation, loading
//! and the protocol choice never panic and never write outside guest memory.
#![no_main]

use irqlab::config::BootProtocol;
use irqlab::loader::KernelImage;
use libfuzzer_sys::fuzz_target;

const MEM: u64 = 32 << 20;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static MEMORY: irqlab::memory::GuestMemory = irqlab::memory::create(MEM).unwrap();
    }
    let image = KernelImage {
        name: "fuzz.img".into(),
        bytes: std::borrow::Cow::Borrowed(data),
    };
    for protocol in [
        BootProtocol::Auto,
        BootProtocol::Native,
        BootProtocol::Pvh,
        BootProtocol::Multiboot,
        BootProtocol::Linux,
    ] {
        MEMORY.with(|mem| {
            let _ = irqlab::boot::load(&image, protocol, mem, MEM);
        });
    }
    let _ = irqlab::loader::kvm_unit_tests::is_kvm_unit_test(data);
});
