//! JSON Lines output: a file written one serialized value per line (`interrupts.jsonl`, and
//! the events of `trace.json`), which remembers its first write error and then stops writing
//! — the run goes on, and the error is reported when the file is closed.

use super::spool::OutFile;
use serde::Serialize;
use std::io::{self, Write};

/// A file written line by line that remembers its first error and then stops writing.
pub(super) struct Sink {
    pub(super) out: OutFile,
    error: Option<io::Error>,
}

impl Sink {
    /// A sink writing `out`.
    pub(super) fn new(out: OutFile) -> Sink {
        Sink { out, error: None }
    }

    /// Writes `prefix`, `value` as one line of JSON, and a newline.
    pub(super) fn line<T: Serialize>(&mut self, prefix: &[u8], value: &T) {
        if self.error.is_some() {
            return;
        }
        let r = self
            .out
            .write_all(prefix)
            .and_then(|()| serde_json::to_writer(&mut self.out, value).map_err(io::Error::other))
            .and_then(|()| self.out.write_all(b"\n"));
        if let Err(e) = r {
            self.error = Some(e);
        }
    }

    /// Writes `bytes` as they are.
    pub(super) fn raw(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(bytes) {
                self.error = Some(e);
            }
        }
    }

    pub(super) fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
            }
        }
    }

    /// Closes the file (see [`OutFile::finish`]); the first error, if any.
    pub(super) fn finish(self) -> io::Result<()> {
        match self.error {
            Some(e) => Err(e),
            None => self.out.finish(),
        }
    }
}
