//! The writer's output files: each opened when tracing is set up and written in place, or —
//! when its path exists and is not a regular file (a FIFO a reader drains after the run,
//! `/dev/null`) — spooled to an unlinked file in the trace directory and copied into the path
//! at the end, so a reader that does not read during the run neither stalls tracing nor costs
//! records.

use crate::trace::TraceIoError;
use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

const BUF: usize = 64 << 10;

/// One output file of the writer.
pub(crate) enum OutFile {
    /// Written in place.
    Direct(BufWriter<File>),
    /// `path` is not a regular file: spooled, copied into it at the end.
    Spooled {
        spool: BufWriter<File>,
        path: PathBuf,
    },
    /// In memory (tests).
    #[cfg(test)]
    Memory(Vec<u8>),
}

impl OutFile {
    pub(super) fn create(path: &Path) -> io::Result<OutFile> {
        match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => Ok(OutFile::Spooled {
                spool: BufWriter::with_capacity(BUF, spool_file(path)?),
                path: path.to_owned(),
            }),
            _ => Ok(OutFile::Direct(BufWriter::with_capacity(
                BUF,
                File::create(path)?,
            ))),
        }
    }

    /// Flushes; a spooled file is copied into its path (which is opened only now).
    pub(super) fn finish(self) -> io::Result<()> {
        match self {
            OutFile::Direct(mut w) => w.flush(),
            OutFile::Spooled { spool, path } => {
                let mut f = spool.into_inner().map_err(|e| e.into_error())?;
                f.rewind()?;
                let mut out = File::create(&path)?;
                io::copy(&mut f, &mut out)?;
                out.flush()
            }
            #[cfg(test)]
            OutFile::Memory(_) => Ok(()),
        }
    }
}

/// An anonymous file next to `path` (`O_TMPFILE`, or created and unlinked at once): nothing is
/// left behind however the process ends.
fn spool_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir);
    if let Ok(f) = tmp {
        return Ok(f);
    }
    let name = format!(
        ".{}.spool-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    );
    let spool = dir.join(name);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&spool)?;
    std::fs::remove_file(&spool)?;
    Ok(f)
}

impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            OutFile::Direct(w) | OutFile::Spooled { spool: w, .. } => w.write(buf),
            #[cfg(test)]
            OutFile::Memory(v) => v.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            OutFile::Direct(w) | OutFile::Spooled { spool: w, .. } => w.write_all(buf),
            #[cfg(test)]
            OutFile::Memory(v) => v.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            OutFile::Direct(w) | OutFile::Spooled { spool: w, .. } => w.flush(),
            #[cfg(test)]
            OutFile::Memory(_) => Ok(()),
        }
    }
}

/// The writer's two streamed outputs, opened when tracing is set up.
pub struct Outputs {
    pub(super) interrupts: OutFile,
    pub(super) chrome: OutFile,
}

impl Outputs {
    /// Creates `DIR/interrupts.jsonl` and `DIR/trace.json` (or their spools).
    pub fn create(dir: &Path) -> Result<Outputs, TraceIoError> {
        let open = |name: &str| {
            let path = dir.join(name);
            OutFile::create(&path).map_err(|source| TraceIoError { path, source })
        };
        Ok(Outputs {
            interrupts: open("interrupts.jsonl")?,
            chrome: open("trace.json")?,
        })
    }

    #[cfg(test)]
    pub(super) fn memory() -> Outputs {
        Outputs {
            interrupts: OutFile::Memory(Vec::new()),
            chrome: OutFile::Memory(Vec::new()),
        }
    }
}
