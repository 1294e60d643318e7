//! Recognises a kvm-unit-tests kernel, so irqlab can map the harness devices those kernels
//! expect from QEMU (`-device pc-testdev`) without being told.
//!
//! The suite's x86 test kernels are Multiboot ELF32 images linked with its libcflat; every one
//! carries libcflat's `report_summary` symbol and the `"SUMMARY: %d tests"` format it prints
//! with. Both must be present: a kernel that merely mentions one of them is not taken for a
//! test of the suite.

/// Whether `image` looks like a kvm-unit-tests kernel.
pub fn is_kvm_unit_test(image: &[u8]) -> bool {
    let has = |needle: &[u8]| image.windows(needle.len()).any(|w| w == needle);
    image.starts_with(b"\x7fELF") && has(b"report_summary\0") && has(b"SUMMARY: %d tests")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_an_elf_with_both_marks() {
        let mut img = b"\x7fELF....report_summary\0....SUMMARY: %d tests".to_vec();
        assert!(is_kvm_unit_test(&img));
        img[0] = 0;
        assert!(!is_kvm_unit_test(&img));
        assert!(!is_kvm_unit_test(b"\x7fELF report_summary\0"));
        assert!(!is_kvm_unit_test(b""));
    }

    #[test]
    fn the_suites_kernels_are_recognised_when_present() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/kvm-unit-tests");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return; // the prebuilt kernels are optional outside CI (tests/kvm_unit_tests.rs)
        };
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "flat") {
                assert!(
                    is_kvm_unit_test(&std::fs::read(e.path()).unwrap()),
                    "{:?}",
                    e.path()
                );
            }
        }
        assert!(!is_kvm_unit_test(
            crate::loader::KernelImage::builtin().bytes.as_ref()
        ));
    }
}
