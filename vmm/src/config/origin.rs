//! Where a config value came from: a position in a config file or a command-line flag.
//!
//! File values are read as [`toml::Spanned`] and their byte offsets turned into line and
//! column while the file is parsed ([`reading`]), so every [`Sourced`] value carries a
//! complete [`Origin`] on its own and layers can be merged freely.

use serde::de::{Deserialize, Deserializer, Error as _};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A config file key at a line and column (1-based).
    File {
        /// The file.
        path: PathBuf,
        /// Line.
        line: usize,
        /// Column.
        column: usize,
    },
    /// A command-line flag.
    Flag(&'static str),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { path, line, column } => write!(f, "{}:{line}:{column}", path.display()),
            Origin::Flag(flag) => write!(f, "{flag}"),
        }
    }
}

/// A value and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Sourced<T> {
    /// The value as given (a file's relative paths not yet resolved).
    pub value: T,
    /// Where it was given.
    pub origin: Origin,
}

impl<T> Sourced<T> {
    /// A value given by a command-line flag (`flag` as the user types it, e.g. `--mem-mib`).
    pub fn flag(value: T, flag: &'static str) -> Sourced<T> {
        Sourced {
            value,
            origin: Origin::Flag(flag),
        }
    }

    /// The same origin with the value transformed.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Sourced<U> {
        Sourced {
            value: f(self.value),
            origin: self.origin,
        }
    }
}

/// Reads the value through [`toml::Spanned`], its origin from the file being parsed; only
/// inside [`reading`] (an error elsewhere).
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sourced<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<T>::deserialize(d)?;
        let origin = READING
            .with(|r| r.borrow().as_ref().map(|f| f.origin(spanned.span().start)))
            .ok_or_else(|| D::Error::custom("config values are only read from a config file"))?;
        Ok(Sourced {
            value: spanned.into_inner(),
            origin,
        })
    }
}

/// A config file's name and where its lines start, to turn byte offsets into positions.
#[derive(Clone, Debug)]
pub(super) struct FileText {
    path: PathBuf,
    /// Byte offset of each line's first byte (the first is 0).
    line_starts: Vec<usize>,
}

impl FileText {
    /// Indexes `text`, read from `path`.
    pub(super) fn new(path: &Path, text: &str) -> FileText {
        let newlines = text.match_indices('\n').map(|(i, _)| i + 1);
        FileText {
            path: path.to_path_buf(),
            line_starts: std::iter::once(0).chain(newlines).collect(),
        }
    }

    /// The position of byte `offset` (line and column from 1; the column counts bytes).
    pub(super) fn origin(&self, offset: usize) -> Origin {
        let line = self.line_starts.partition_point(|&s| s <= offset);
        Origin::File {
            path: self.path.clone(),
            line,
            column: offset - self.line_starts[line - 1] + 1,
        }
    }
}

thread_local! {
    /// The file [`reading`] is parsing on this thread, for [`Sourced`]'s `Deserialize`.
    static READING: RefCell<Option<FileText>> = const { RefCell::new(None) };
}

/// Runs `parse` with `file` as the origin of every [`Sourced`] value it deserializes.
pub(super) fn reading<R>(file: FileText, parse: impl FnOnce() -> R) -> R {
    /// Restores the previous file (none, unless parses nest) even if `parse` unwinds.
    struct Restore(Option<FileText>);
    impl Drop for Restore {
        fn drop(&mut self) {
            READING.with(|r| *r.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(READING.with(|r| r.borrow_mut().replace(file)));
    parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(text: &str, offset: usize) -> (usize, usize) {
        match FileText::new(Path::new("t.toml"), text).origin(offset) {
            Origin::File { line, column, .. } => (line, column),
            Origin::Flag(f) => panic!("{f}"),
        }
    }

    #[test]
    fn positions_count_from_one() {
        assert_eq!(position("ab\ncd", 0), (1, 1));
        assert_eq!(position("ab\ncd", 2), (1, 3));
        assert_eq!(position("ab\ncd", 3), (2, 1));
        assert_eq!(position("ab\ncd", 4), (2, 2));
        assert_eq!(position("ab\n", 3), (2, 1));
        assert_eq!(position("", 0), (1, 1));
    }

    #[test]
    fn sourced_values_are_read_only_from_a_file() {
        #[derive(Debug, serde::Deserialize)]
        struct Doc {
            v: Sourced<i64>,
        }
        let err = toml::from_str::<Doc>("v = 1").unwrap_err();
        assert!(
            err.message().contains("only read from a config file"),
            "{err}"
        );
        let text = "\nv = 1";
        let doc: Doc = reading(FileText::new(Path::new("c.toml"), text), || {
            toml::from_str(text)
        })
        .unwrap();
        assert_eq!(
            doc.v,
            Sourced {
                value: 1,
                origin: Origin::File {
                    path: "c.toml".into(),
                    line: 2,
                    column: 5
                }
            }
        );
        assert!(READING.with(|r| r.borrow().is_none()));
    }
}
