//! Per-CPU data reached through GS (`swapgs` on every ring-3 → ring-0 transition).
//!
//! While the kernel runs, IA32_GS_BASE points at this CPU's [`PerCpu`] and
//! IA32_KERNEL_GS_BASE holds the user's GS base (0); `swapgs` exchanges them at the syscall
//! entry, on interrupts and exceptions from ring 3, and before returning to ring 3. The field
//! offsets are used by the assembly entry stubs, hence the `OFF_*` constants and the layout
//! assertions.

use core::cell::UnsafeCell;
use core::mem::offset_of;

/// CPUs with per-CPU data (and GDT/TSS, interrupt counts, AP stacks): every vCPU the VMM may
/// start (`irqlab_abi::limits::MAX_VCPUS`).
pub const MAX_CPUS: usize = irqlab_abi::limits::MAX_VCPUS as usize;

/// This CPU's data.
#[repr(C)]
pub struct PerCpu {
    /// Top of the stack the syscall entry switches to.
    pub syscall_rsp: u64,
    /// The user RSP saved by the syscall entry.
    pub user_rsp: u64,
    /// The kernel RSP `user::enter` saved, to come back to when the task ends.
    pub task_return_rsp: u64,
    /// System calls served.
    pub syscalls: u64,
    /// CPU index.
    pub cpu: u64,
    /// Work to do before returning to ring 3 ([`WORK_NEED_RESCHED`], [`WORK_SIGPENDING`]):
    /// the interrupt exit paths test it (Linux's `TIF_*` flags read at `exit_to_user_mode`).
    pub work: u64,
}

/// [`PerCpu::work`]: the timer or a blocking call asked for `schedule()`.
pub const WORK_NEED_RESCHED: u64 = 1 << 0;
/// [`PerCpu::work`]: the current task has a signal to deliver.
pub const WORK_SIGPENDING: u64 = 1 << 1;

/// Offset of [`PerCpu::syscall_rsp`].
pub const OFF_SYSCALL_RSP: usize = offset_of!(PerCpu, syscall_rsp);
/// Offset of [`PerCpu::user_rsp`].
pub const OFF_USER_RSP: usize = offset_of!(PerCpu, user_rsp);
/// Offset of [`PerCpu::task_return_rsp`].
pub const OFF_TASK_RETURN_RSP: usize = offset_of!(PerCpu, task_return_rsp);
/// Offset of [`PerCpu::syscalls`].
pub const OFF_SYSCALLS: usize = offset_of!(PerCpu, syscalls);
/// Offset of [`PerCpu::cpu`].
pub const OFF_CPU: usize = offset_of!(PerCpu, cpu);
/// Offset of [`PerCpu::work`].
pub const OFF_WORK: usize = offset_of!(PerCpu, work);

/// This CPU's index (0 = boot CPU), read through GS.
pub fn cpu_index() -> usize {
    let cpu: u64;
    // SAFETY: in the kernel GS_BASE always points at this CPU's PerCpu (`init`).
    unsafe {
        core::arch::asm!("mov {}, gs:[{off}]", out(reg) cpu, off = const OFF_CPU,
            options(nostack, readonly, preserves_flags))
    };
    cpu as usize
}

struct Cell(UnsafeCell<PerCpu>);
// SAFETY: one PerCpu per CPU; only its own CPU touches it, with interrupts off.
unsafe impl Sync for Cell {}

static CPUS: [Cell; MAX_CPUS] = [const {
    Cell(UnsafeCell::new(PerCpu {
        syscall_rsp: 0,
        user_rsp: 0,
        task_return_rsp: 0,
        syscalls: 0,
        cpu: 0,
        work: 0,
    }))
}; MAX_CPUS];

/// Points GS at the boot CPU's data.
pub fn init(syscall_stack_top: u64) {
    init_cpu(0, syscall_stack_top);
}

/// Points GS at CPU `cpu`'s data (on that CPU).
pub fn init_cpu(cpu: usize, syscall_stack_top: u64) {
    let p = CPUS[cpu].0.get();
    // SAFETY: called once on CPU `cpu` before anything else uses its PerCpu.
    unsafe {
        (*p).syscall_rsp = syscall_stack_top;
        (*p).cpu = cpu as u64;
    }
    // SAFETY: GS_BASE = our PerCpu (kernel convention), KERNEL_GS_BASE = user GS (0).
    unsafe {
        crate::cpu::wrmsr(crate::cpu::MSR_GS_BASE, p as u64);
        crate::cpu::wrmsr(crate::cpu::MSR_KERNEL_GS_BASE, 0);
    }
}

/// System calls served on this CPU.
pub fn syscalls() -> u64 {
    // SAFETY: a plain read of this CPU's counter.
    unsafe { core::ptr::read_volatile(&(*CPUS[cpu_index()].0.get()).syscalls) }
}

fn this() -> *mut PerCpu {
    CPUS[cpu_index()].0.get()
}

/// This CPU's pending return-to-user work.
pub fn work() -> u64 {
    // SAFETY: a plain read of this CPU's word.
    unsafe { core::ptr::read_volatile(&(*this()).work) }
}

/// Sets bits in this CPU's return-to-user work (interrupts off).
pub fn set_work(bits: u64) {
    // SAFETY: only this CPU writes its word, with interrupts off.
    unsafe { (*this()).work |= bits }
}

/// Clears bits in this CPU's return-to-user work (interrupts off).
pub fn clear_work(bits: u64) {
    // SAFETY: only this CPU writes its word, with interrupts off.
    unsafe { (*this()).work &= !bits }
}

/// The stack the SYSCALL entry switches to (the running task's kernel stack).
pub fn syscall_stack() -> u64 {
    // SAFETY: a plain read of this CPU's word.
    unsafe { core::ptr::read_volatile(&(*this()).syscall_rsp) }
}

/// Points the SYSCALL entry at another kernel stack (on a task switch, interrupts off).
pub fn set_syscall_stack(top: u64) {
    // SAFETY: only this CPU writes its word, with interrupts off.
    unsafe { (*this()).syscall_rsp = top }
}
