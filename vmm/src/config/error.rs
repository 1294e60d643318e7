//! Config errors: each names the file (and line and column) or the flag it comes from.

use super::origin::Origin;
use std::path::PathBuf;

/// Config errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// Where.
        origin: Origin,
        /// The parser's message (one line).
        message: String,
    },
    /// A value outside its allowed range.
    #[error("{origin}: `{key}` {message}")]
    Invalid {
        /// Where.
        origin: Origin,
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}
