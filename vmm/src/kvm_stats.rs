//! KVM's binary statistics for one vCPU (`KVM_GET_STATS_FD`, Documentation/virt/kvm/api.rst
//! §4.133). kvm-ioctls has no wrapper; the layout comes from kvm-bindings'
//! `kvm_stats_header` and `kvm_stats_desc`.
//!
//! The descriptors are read once; [`VcpuStats::sample`] then reads the whole data block with
//! one `pread`, so sampling costs one system call and no VM exit.

use kvm_bindings::{kvm_stats_desc, kvm_stats_header};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;

/// The ioctl numbers kvm-ioctls does not define.
mod ioctls {
    // `KVM_GET_STATS_FD` = `_IO(KVMIO, 0xce)` (include/uapi/linux/kvm.h).
    vmm_sys_util::ioctl_io_nr!(KVM_GET_STATS_FD, kvm_bindings::KVMIO, 0xce);
}
use ioctls::KVM_GET_STATS_FD;

/// Stats errors.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The ioctl failed (old kernel, or stats not supported).
    #[error("KVM_GET_STATS_FD: {0}")]
    Ioctl(#[source] std::io::Error),
    /// Reading the stats file failed.
    #[error("reading KVM stats: {0}")]
    Read(#[source] std::io::Error),
    /// The header or a descriptor is inconsistent.
    #[error("malformed KVM stats layout: {0}")]
    Layout(&'static str),
}

/// One statistic: its name and where its first u64 lives in the data block.
#[derive(Debug, Clone)]
pub struct StatDesc {
    /// KVM's name (`exits`, `io_exits`, `halt_exits`, ...).
    pub name: String,
    /// Index of its (first) value in a [`VcpuStats::sample`].
    pub index: usize,
}

/// The statistics file of one vCPU.
pub struct VcpuStats {
    file: File,
    data_offset: u64,
    words: usize,
    descs: Vec<StatDesc>,
}

impl VcpuStats {
    /// Opens the stats of the vCPU behind `vcpu_fd`.
    pub fn open(vcpu_fd: &impl AsRawFd) -> Result<VcpuStats, StatsError> {
        // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new descriptor or -1.
        let fd = unsafe { libc::ioctl(vcpu_fd.as_raw_fd(), KVM_GET_STATS_FD() as _) };
        if fd < 0 {
            return Err(StatsError::Ioctl(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned to us and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        let mut raw = [0u8; std::mem::size_of::<kvm_stats_header>()];
        file.read_exact_at(&mut raw, 0).map_err(StatsError::Read)?;
        let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let (name_size, num_desc, desc_offset, data_offset) = (
            u32_at(&raw, 4) as usize,
            u32_at(&raw, 8) as usize,
            u32_at(&raw, 16) as u64,
            u32_at(&raw, 20) as u64,
        );
        if num_desc > 4096 || name_size > 4096 {
            return Err(StatsError::Layout(
                "implausible descriptor count or name size",
            ));
        }
        let desc_size = std::mem::size_of::<kvm_stats_desc>() + name_size;
        let mut table = vec![0u8; desc_size * num_desc];
        file.read_exact_at(&mut table, desc_offset)
            .map_err(StatsError::Read)?;
        let mut descs = Vec::with_capacity(num_desc);
        let mut words = 0usize;
        for d in table.chunks_exact(desc_size) {
            let size = u16::from_le_bytes([d[6], d[7]]) as usize;
            let offset = u32_at(d, 8) as usize;
            if !offset.is_multiple_of(8) {
                return Err(StatsError::Layout("unaligned value offset"));
            }
            let name_bytes = &d[16..];
            let end = name_bytes
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(name_bytes.len());
            descs.push(StatDesc {
                name: String::from_utf8_lossy(&name_bytes[..end]).into_owned(),
                index: offset / 8,
            });
            words = words.max(offset / 8 + size.max(1));
        }
        Ok(VcpuStats {
            file,
            data_offset,
            words,
            descs,
        })
    }

    /// The statistics this kernel exports.
    pub fn descriptors(&self) -> &[StatDesc] {
        &self.descs
    }

    /// Index of the statistic `name`, if the kernel has it.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.descs.iter().find(|d| d.name == name).map(|d| d.index)
    }

    /// Reads every value (one `pread`).
    pub fn sample(&self) -> Result<Vec<u64>, StatsError> {
        let mut raw = vec![0u8; self.words * 8];
        self.file
            .read_exact_at(&mut raw, self.data_offset)
            .map_err(StatsError::Read)?;
        Ok(raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_fd_ioctl_number_is_the_kernels() {
        // `_IO(0xAE, 0xce)`: no direction, no size, type 0xAE, number 0xce.
        assert_eq!(KVM_GET_STATS_FD(), 0xAECE);
    }

    #[test]
    fn a_vcpu_exports_the_exit_counters() {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            println!("SKIP: no /dev/kvm");
            return;
        };
        let vm = kvm.create_vm().unwrap();
        let vcpu = vm.create_vcpu(0).unwrap();
        let stats = VcpuStats::open(&vcpu).unwrap();
        for name in ["exits", "io_exits", "halt_exits", "irq_injections"] {
            assert!(
                stats.index_of(name).is_some(),
                "no {name} in {:?}",
                stats.descriptors()
            );
        }
        let s = stats.sample().unwrap();
        assert_eq!(
            s[stats.index_of("exits").unwrap()],
            0,
            "a vCPU that never ran"
        );
    }
}
