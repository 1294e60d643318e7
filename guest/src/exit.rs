//! Ending the VM through the debug-exit port (see `irqlab_abi::status`).

use crate::port;
use irqlab_abi::ports::DEBUG_EXIT;

/// Reports `status` to the VMM, which stops every vCPU and exits. Never returns: if the
/// port is absent (another VMM), the CPU halts with interrupts off.
pub fn exit(status: u32) -> ! {
    crate::serial::flush();
    // SAFETY: the debug-exit port is irqlab's; writing it ends the VM.
    unsafe { port::outl(DEBUG_EXIT, status) };
    halt_forever()
}

/// Halts with interrupts disabled, forever.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli; hlt only stops this CPU.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
