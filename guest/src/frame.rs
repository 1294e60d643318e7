//! The register frame of an interrupted context, as the IDT's full entry path saves it.

/// Saved state of the interrupted context, lowest address first (laid out like Linux's
/// `pt_regs`): the 15 general registers the entry path pushes, the vector and error code the
/// stub pushes, then what the CPU pushed.
#[repr(C)]
#[derive(Debug)]
#[allow(missing_docs)]
pub struct Frame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Vector number (pushed by the stub).
    pub vector: u64,
    /// Error code (pushed by the CPU, or 0 by the stub).
    pub error_code: u64,
    /// Interrupted RIP (pushed by the CPU from here on).
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl Frame {
    /// Whether the interrupted code ran in ring 3.
    pub fn is_from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

// The entry path pushes 15 registers below the stub's vector and error code and the CPU's
// five words; `idt`'s assembly relies on this layout.
const _: () = assert!(core::mem::offset_of!(Frame, vector) == 15 * 8);
const _: () = assert!(core::mem::size_of::<Frame>() == 22 * 8);
