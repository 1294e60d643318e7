//! Exception vectors and error codes (Intel SDM vol. 3, §6.3.1 table 6-1, §6.13, §6.15).

/// Architectural exception vectors 0–21.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exception {
    /// #DE divide error.
    DivideError = 0,
    /// #DB debug.
    Debug = 1,
    /// NMI.
    Nmi = 2,
    /// #BP breakpoint (`int3`).
    Breakpoint = 3,
    /// #OF overflow.
    Overflow = 4,
    /// #BR bound range exceeded.
    BoundRange = 5,
    /// #UD invalid opcode.
    InvalidOpcode = 6,
    /// #NM device not available.
    DeviceNotAvailable = 7,
    /// #DF double fault.
    DoubleFault = 8,
    /// #TS invalid TSS.
    InvalidTss = 10,
    /// #NP segment not present.
    SegmentNotPresent = 11,
    /// #SS stack-segment fault.
    StackSegment = 12,
    /// #GP general protection.
    GeneralProtection = 13,
    /// #PF page fault.
    PageFault = 14,
    /// #MF x87 floating-point error.
    X87Float = 16,
    /// #AC alignment check.
    AlignmentCheck = 17,
    /// #MC machine check.
    MachineCheck = 18,
    /// #XM SIMD floating-point exception.
    SimdFloat = 19,
    /// #VE virtualization exception.
    Virtualization = 20,
    /// #CP control protection.
    ControlProtection = 21,
}

impl Exception {
    /// The exception for a vector, if the vector is an architectural exception.
    pub const fn from_vector(vector: u8) -> Option<Exception> {
        use Exception::*;
        Some(match vector {
            0 => DivideError,
            1 => Debug,
            2 => Nmi,
            3 => Breakpoint,
            4 => Overflow,
            5 => BoundRange,
            6 => InvalidOpcode,
            7 => DeviceNotAvailable,
            8 => DoubleFault,
            10 => InvalidTss,
            11 => SegmentNotPresent,
            12 => StackSegment,
            13 => GeneralProtection,
            14 => PageFault,
            16 => X87Float,
            17 => AlignmentCheck,
            18 => MachineCheck,
            19 => SimdFloat,
            20 => Virtualization,
            21 => ControlProtection,
            _ => return None,
        })
    }

    /// The mnemonic used in the SDM ("#GP", "#PF", …).
    pub const fn mnemonic(self) -> &'static str {
        use Exception::*;
        match self {
            DivideError => "#DE",
            Debug => "#DB",
            Nmi => "NMI",
            Breakpoint => "#BP",
            Overflow => "#OF",
            BoundRange => "#BR",
            InvalidOpcode => "#UD",
            DeviceNotAvailable => "#NM",
            DoubleFault => "#DF",
            InvalidTss => "#TS",
            SegmentNotPresent => "#NP",
            StackSegment => "#SS",
            GeneralProtection => "#GP",
            PageFault => "#PF",
            X87Float => "#MF",
            AlignmentCheck => "#AC",
            MachineCheck => "#MC",
            SimdFloat => "#XM",
            Virtualization => "#VE",
            ControlProtection => "#CP",
        }
    }

    /// Whether the CPU pushes an error code for this exception (SDM table 6-1).
    pub const fn has_error_code(self) -> bool {
        use Exception::*;
        matches!(
            self,
            DoubleFault
                | InvalidTss
                | SegmentNotPresent
                | StackSegment
                | GeneralProtection
                | PageFault
                | AlignmentCheck
                | ControlProtection
        )
    }
}

/// Whether the CPU pushes an error code for `vector` (false for every non-exception vector).
pub const fn vector_has_error_code(vector: u8) -> bool {
    match Exception::from_vector(vector) {
        Some(e) => e.has_error_code(),
        None => false,
    }
}

/// A page-fault error code (SDM §4.7, figure 4-12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFaultError(pub u64);

impl PageFaultError {
    /// P: 0 = non-present page, 1 = protection violation.
    pub const fn protection(self) -> bool {
        self.0 & 1 != 0
    }
    /// W/R: the access was a write.
    pub const fn write(self) -> bool {
        self.0 & 2 != 0
    }
    /// U/S: the access came from ring 3.
    pub const fn user(self) -> bool {
        self.0 & 4 != 0
    }
    /// RSVD: a reserved bit was set in a paging entry.
    pub const fn reserved_bit(self) -> bool {
        self.0 & 8 != 0
    }
    /// I/D: the access was an instruction fetch.
    pub const fn instruction_fetch(self) -> bool {
        self.0 & 16 != 0
    }

    /// A short description such as "user write to a non-present page".
    pub const fn describe(self) -> (&'static str, &'static str, &'static str) {
        let who = if self.user() { "user" } else { "kernel" };
        let what = if self.instruction_fetch() {
            "instruction fetch"
        } else if self.write() {
            "write"
        } else {
            "read"
        };
        let why = if self.reserved_bit() {
            "reserved bit set in a paging entry"
        } else if self.protection() {
            "protection violation"
        } else {
            "non-present page"
        };
        (who, what, why)
    }
}

/// Which table a selector error code points into (SDM §6.13, figure 6-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorTable {
    /// The GDT.
    Gdt,
    /// The IDT.
    Idt,
    /// The LDT.
    Ldt,
}

/// A selector error code as pushed by #TS, #NP, #SS and #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectorError(pub u64);

impl SelectorError {
    /// EXT: the fault happened while delivering an external event.
    pub const fn external(self) -> bool {
        self.0 & 1 != 0
    }
    /// The descriptor table the index refers to.
    pub const fn table(self) -> SelectorTable {
        if self.0 & 2 != 0 {
            SelectorTable::Idt
        } else if self.0 & 4 != 0 {
            SelectorTable::Ldt
        } else {
            SelectorTable::Gdt
        }
    }
    /// The descriptor index (for the IDT: the vector).
    pub const fn index(self) -> u16 {
        ((self.0 >> 3) & 0x1fff) as u16
    }
    /// Zero error code: the fault is not about a segment selector.
    pub const fn is_null(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_pushing_vectors_follow_table_6_1() {
        let with: Vec<u8> = (0..=255u8).filter(|v| vector_has_error_code(*v)).collect();
        assert_eq!(with, vec![8, 10, 11, 12, 13, 14, 17, 21]);
    }

    #[test]
    fn page_fault_error_decodes_user_write_protection() {
        let e = PageFaultError(0b00111);
        assert_eq!(e.describe(), ("user", "write", "protection violation"));
        let e = PageFaultError(0b10100);
        assert_eq!(
            e.describe(),
            ("user", "instruction fetch", "non-present page")
        );
        assert_eq!(
            PageFaultError(0).describe(),
            ("kernel", "read", "non-present page")
        );
    }

    #[test]
    fn selector_error_names_the_idt_vector() {
        // #GP raised by `int 0x80` through a DPL-0 gate: IDT bit set, index 0x80.
        let e = SelectorError((0x80 << 3) | 2);
        assert_eq!(e.table(), SelectorTable::Idt);
        assert_eq!(e.index(), 0x80);
        assert!(!e.external());
        assert!(SelectorError(0).is_null());
        assert_eq!(SelectorError(0x1c).table(), SelectorTable::Ldt);
    }

    #[test]
    fn mnemonics_round_trip_through_vectors() {
        assert_eq!(
            Exception::from_vector(14).map(Exception::mnemonic),
            Some("#PF")
        );
        assert_eq!(Exception::from_vector(9), None);
        assert_eq!(Exception::from_vector(32), None);
    }
}
