//! Architecture-specific setup. irqlab is x86-64 only.
pub mod x86_64;
