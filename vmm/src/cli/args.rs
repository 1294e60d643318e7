//! Numeric flag values: parsed and range-checked by clap value parsers, so a bad value (NaN,
//! infinity, zero where it means nothing, negative, huge) is a usage error (exit 64) naming
//! the flag and the accepted range, and no code after parsing can be handed one.

use irqlab::config::{MEM_MIB_MAX, MEM_MIB_MIN, TIMEOUT_SECS_MAX, VCPUS_MAX};

/// A whole number from `min` to `max` (`unit` follows the range in the message).
pub fn whole<T: TryFrom<u64>>(s: &str, min: u64, max: u64, unit: &str) -> Result<T, String> {
    s.parse::<u64>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| format!("must be a whole number from {min} to {max}{unit}"))
}

/// A finite number of seconds from `min` to `max` (`what_min` names `min` in the message,
/// e.g. "0 (off)").
pub fn seconds(s: &str, min: f64, max: f64, what_min: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && (min..=max).contains(v))
        .ok_or_else(|| format!("must be a number of seconds from {what_min} to {max}"))
}

/// `run --mem-mib`: guest memory in MiB.
pub fn mem_mib(s: &str) -> Result<u64, String> {
    whole(s, MEM_MIB_MIN, MEM_MIB_MAX, " MiB")
}

/// `inspect --mem-mib`: as for `run`, but from 1 MiB: inspect answers "would the image fit?",
/// and for 1 MiB the answer (no: raise mem_mib) is still an answer.
pub fn inspect_mem_mib(s: &str) -> Result<u64, String> {
    whole(s, 1, MEM_MIB_MAX, " MiB")
}

/// `run --vcpus`.
pub fn vcpus(s: &str) -> Result<u8, String> {
    whole(s, 1, VCPUS_MAX.into(), "")
}

/// `run --timeout`: 0 turns the watchdog off.
pub fn timeout(s: &str) -> Result<f64, String> {
    seconds(s, 0.0, TIMEOUT_SECS_MAX, "0 (off)")
}

/// Adds the range checks to `irqlab run`'s numeric flags (`--mem-mib`, `--vcpus`,
/// `--timeout`), which are declared in `run.rs` with plain types (and checked again, like the
/// config file's keys, by `ConfigLayer::validate`). A value starting with `-` is taken as the value
/// (as for every numeric flag), so `-1` and `-inf` are told the range too. Looks the flags up
/// by id without panicking if one is renamed; `run_flags_are_range_checked` notices that.
pub fn check_run_flags(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommands(|sub| {
        if sub.get_name() != "run" {
            return sub;
        }
        sub.mut_args(|arg| match arg.get_id().as_str() {
            "mem_mib" => arg.value_parser(mem_mib).allow_hyphen_values(true),
            "vcpus" => arg.value_parser(vcpus).allow_hyphen_values(true),
            "timeout" => arg.value_parser(timeout).allow_hyphen_values(true),
            _ => arg,
        })
    })
}

/// clap's error as one `irqlab:` line: the message, then any tip, without the usage block.
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // clap renders the whole help here: keep its usage line only.
        let usage = lines
            .find_map(|l| l.strip_prefix("Usage: "))
            .unwrap_or("irqlab <COMMAND>");
        return format!("a subcommand is required: {usage} (see --help)");
    }
    let mut out = String::new();
    for line in lines {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        let line = line.strip_prefix("error: ").unwrap_or(line);
        if !out.is_empty() {
            out.push_str(if line.starts_with("tip:") { "; " } else { " " });
        }
        out.push_str(line);
    }
    format!("{out} (see --help)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_in_range_only() {
        assert_eq!(whole::<u32>("5", 1, 10, ""), Ok(5));
        for bad in [
            "0",
            "11",
            "-1",
            "nan",
            "inf",
            "1e300",
            "2.5",
            "",
            "99999999999999999999",
        ] {
            assert_eq!(
                whole::<u32>(bad, 1, 10, ""),
                Err("must be a whole number from 1 to 10".into()),
                "{bad}"
            );
        }
        // In range but not representable in the flag's type.
        assert!(whole::<u8>("300", 1, 1000, "").is_err());
    }

    #[test]
    fn seconds_are_finite_and_in_range() {
        assert_eq!(timeout("0"), Ok(0.0));
        assert_eq!(timeout("2.5"), Ok(2.5));
        for bad in ["nan", "NaN", "inf", "-inf", "1e300", "-1", "86401", "x"] {
            assert_eq!(
                timeout(bad),
                Err("must be a number of seconds from 0 (off) to 86400".into()),
                "{bad}"
            );
        }
    }
}
