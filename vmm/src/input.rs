//! Reading the files a user names as inputs (kernel images, initrds, Multiboot modules,
//! config files): regular files only, and never more than a cap.
//!
//! A device (`/dev/zero`), a FIFO or a directory named by mistake gets a one-line error
//! saying what it is instead of growing memory without end or blocking in `open(2)`: the
//! file is opened with `O_NONBLOCK` (an open FIFO with no writer returns at once) and its
//! type is checked with `fstat` on the opened descriptor, so a path swapped between the check
//! and the read cannot slip through. (The path is `stat`ed first too, so a device is rejected
//! without being opened at all.) Reads are bounded: a file whose size lies (procfs) still
//! cannot make irqlab read more than the cap.
//!
//! An output file a user names (the serial log) gets the same treatment through
//! [`create_regular`]: a regular file or a new one, never a FIFO to block on or a device.

use std::fs::{File, FileType, Metadata};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What a non-regular file is, in words ("a directory").
pub fn kind(t: FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

fn not_regular(t: FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {}, not a regular file", kind(t)),
    )
}

fn require_regular(m: &Metadata) -> io::Result<()> {
    if m.file_type().is_file() {
        Ok(())
    } else {
        Err(not_regular(m.file_type()))
    }
}

/// Opens `path` for reading if it is a regular file; returns it and its size.
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    // Rejects devices, FIFOs and directories without opening them (opening a device can have
    // side effects); the `fstat` below is the check that counts.
    if let Ok(m) = std::fs::metadata(path) {
        require_regular(&m)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let m = file.metadata()?;
    require_regular(&m)?;
    Ok((file, m.len()))
}

/// Opens `path` for writing as an output irqlab owns: a new file (created with mode 0666
/// before the umask), or an existing regular file, truncated. Anything else — a FIFO, a
/// character or block device, a socket, a directory, also through a symbolic link — is an
/// error of kind [`io::ErrorKind::InvalidInput`] saying what it is, and is never truncated or
/// written.
///
/// No hang and no race: the open is `O_NONBLOCK` (a FIFO without a reader fails at once with
/// `ENXIO` instead of waiting for one; one with a reader opens, and is then refused) and
/// `O_NOCTTY` (a terminal cannot become the controlling one), and the type that counts is the
/// opened descriptor's (`fstat`); only then is the file truncated and made blocking again.
pub fn create_regular(path: &Path) -> io::Result<File> {
    // Refuses an existing non-regular file without opening it (opening a device can have side
    // effects); the `fstat` below is the check that counts.
    if let Ok(m) = std::fs::metadata(path) {
        require_regular(&m)?;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // ENXIO: a FIFO without a reader (or a socket, or a device without a driver);
            // EISDIR: a directory. Say what it is when the path still shows it.
            Some(libc::ENXIO | libc::EISDIR) => match std::fs::metadata(path) {
                Ok(m) if !m.file_type().is_file() => not_regular(m.file_type()),
                _ => e,
            },
            _ => e,
        })?;
    require_regular(&file.metadata()?)?;
    file.set_len(0)?;
    // SAFETY: F_SETFL on a descriptor `file` owns; clearing O_NONBLOCK (which a regular file
    // ignores anyway) leaves the other status flags as they are.
    let rc = unsafe {
        libc::fcntl(
            file.as_raw_fd(),
            libc::F_SETFL,
            libc::fcntl(file.as_raw_fd(), libc::F_GETFL) & !libc::O_NONBLOCK,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Reads all of the regular file `path`, at most `cap` bytes: a larger file is an error of
/// kind [`io::ErrorKind::FileTooLarge`] whose message names `limit` (what the cap is, e.g.
/// "the 64 MiB of guest memory").
pub fn read_regular(path: &Path, cap: u64, limit: &str) -> io::Result<Vec<u8>> {
    let (file, size) = open_regular(path)?;
    let too_big = |what: String| {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("{what} is more than {limit}"),
        )
    };
    if size > cap {
        return Err(too_big(format!("its size ({})", bytes(size))));
    }
    // Bounded whatever the size said: one byte past the cap tells a file that grew.
    let mut buf = Vec::with_capacity(size as usize);
    file.take(cap.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(too_big(format!("its content (over {})", bytes(cap))));
    }
    Ok(buf)
}

/// A byte count for messages: "512 bytes", "12.3 MiB".
pub fn bytes(n: u64) -> String {
    if n < 1 << 20 {
        format!("{n} bytes")
    } else {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("irqlab-input-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn devices_fifos_and_directories_are_named() {
        let d = scratch("kinds");
        let err = |p: &Path| read_regular(p, 1 << 20, "1 MiB").unwrap_err().to_string();
        assert_eq!(
            err(Path::new("/dev/zero")),
            "is a character device, not a regular file"
        );
        assert_eq!(err(&d), "is a directory, not a regular file");
        let fifo = d.join("fifo");
        mkfifo(&fifo);
        // Returns at once: no writer is needed to find out it is a FIFO.
        assert_eq!(err(&fifo), "is a FIFO (named pipe), not a regular file");
        assert_eq!(
            err(&d.join("missing")),
            io::Error::from_raw_os_error(libc::ENOENT).to_string()
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn outputs_are_regular_files_created_or_truncated() {
        let d = scratch("outputs");
        let err = |p: &Path| create_regular(p).unwrap_err().to_string();
        let f = d.join("log");
        create_regular(&f).unwrap();
        assert!(f.is_file());
        std::fs::write(&f, "old content").unwrap();
        std::io::Write::write_all(&mut create_regular(&f).unwrap(), b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
        assert_eq!(
            err(Path::new("/dev/null")),
            "is a character device, not a regular file"
        );
        assert_eq!(err(&d), "is a directory, not a regular file");
        let fifo = d.join("fifo");
        mkfifo(&fifo);
        // Returns at once without a reader, and is refused with one.
        assert_eq!(err(&fifo), "is a FIFO (named pipe), not a regular file");
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        assert_eq!(err(&fifo), "is a FIFO (named pipe), not a regular file");
        drop(reader);
        let link = d.join("link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        assert_eq!(err(&link), "is a character device, not a regular file");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn reads_are_capped() {
        let d = scratch("cap");
        let f = d.join("f");
        std::fs::write(&f, vec![7u8; 3000]).unwrap();
        assert_eq!(read_regular(&f, 3000, "x").unwrap().len(), 3000);
        let e = read_regular(&f, 2999, "the limit").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(
            e.to_string(),
            "its size (3000 bytes) is more than the limit"
        );
        // procfs sizes lie (0 here): the bounded read still stops at the cap.
        let e = read_regular(Path::new("/proc/self/maps"), 1, "1 byte").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge, "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
