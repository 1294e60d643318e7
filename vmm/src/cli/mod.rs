//! Command-line parsing and dispatch. Every failure prints one line on stderr, prefixed with
//! `irqlab:`, and maps to a documented exit code (see `irqlab::outcome::code`).

mod args;
mod bench;
mod check;
mod inspect;
mod log;
mod run;
mod trace;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use irqlab::outcome::code;

const EXAMPLES: &str = "\
Examples:
  irqlab run                                  boot the built-in guest's self-test
  irqlab run configs/hello.toml               run an experiment config
  irqlab run configs/cost.toml --timeout 30   override a config value
  irqlab run --kernel my.elf --cmdline 'x=1'  boot your own ELF64 kernel
  irqlab check                                report what this host supports
  irqlab inspect vmlinux                      how irqlab would boot a kernel image
  irqlab bench boot                           boot time, exit-loop overhead, VMM memory
  irqlab bench irq                            PIT/MSI delivery, split vs kernel irqchip
  irqlab run configs/timer.toml --trace out   trace every interrupt into out/
  irqlab trace diff split/ kernel/            compare two traces per source

Exit codes: guest status 0-63 (0 = all passed); 64 usage, 65 config, 66 kernel image,
69 host, 70 internal, 71 triple fault, 72 KVM internal error, 73 guest stopped,
74 watchdog, 75 guest requested reboot, 76 sandbox violation, 129 SIGHUP, 130 SIGINT,
131 SIGQUIT, 143 SIGTERM.";

/// irqlab: boot a guest kernel on KVM, drive interrupts into it, and see what each one cost.
#[derive(Parser, Debug)]
#[command(name = "irqlab", version, about, after_help = EXAMPLES)]
struct Cli {
    /// Diagnostics on stderr: -v how the machine is built and torn down, -vv more detail,
    /// -vvv everything (lines start `irqlab[level]:`; the outcome stays one `irqlab:` line).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Boot a guest and run it until it exits.
    Run(run::RunArgs),
    /// Report the host's KVM capabilities.
    Check,
    /// Show how irqlab would load and enter a kernel image (format, notes, boot protocol).
    Inspect(inspect::InspectArgs),
    /// Measure boot time, exit-loop overhead, memory and interrupt delivery.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Look at traces written by `irqlab run --trace DIR`.
    #[command(subcommand)]
    Trace(trace::TraceCommand),
}

/// Parses `argv` (numeric flags range-checked, see [`args`]).
fn parse<I, T>(argv: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = args::check_run_flags(Cli::command());
    let matches = cmd.try_get_matches_from_mut(argv)?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// Parses the command line, runs it, returns the exit code.
pub fn main() -> u8 {
    let cli = match parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // A usage error: one line, like every other error.
            eprintln!("irqlab: {}", args::one_line(&e));
            return code::USAGE;
        }
        Err(e) => {
            // --help, --version.
            let _ = e.print();
            return 0;
        }
    };
    log::init(cli.verbose);
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check => check::check(),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Bench(cmd) => bench::bench(cmd),
        Command::Trace(cmd) => trace::trace(cmd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_error(argv: &[&str]) -> String {
        let argv = std::iter::once("irqlab").chain(argv.iter().copied());
        match parse(argv) {
            Ok(cli) => panic!("accepted: {cli:?}"),
            Err(e) => {
                assert!(e.use_stderr(), "{e}");
                args::one_line(&e)
            }
        }
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        args::check_run_flags(Cli::command()).debug_assert();
    }

    #[test]
    fn run_flags_are_range_checked() {
        for (flag, bad, range) in [
            ("--mem-mib", "0", "from 2 to 3072 MiB"),
            ("--mem-mib", "-1", "from 2 to 3072 MiB"),
            ("--mem-mib", "1e300", "from 2 to 3072 MiB"),
            ("--vcpus", "0", "from 1 to 8"),
            ("--vcpus", "300", "from 1 to 8"),
            ("--timeout", "nan", "from 0 (off) to 86400"),
            ("--timeout", "inf", "from 0 (off) to 86400"),
            ("--timeout", "-1", "from 0 (off) to 86400"),
        ] {
            let line = usage_error(&["run", flag, bad]);
            assert!(
                line.starts_with(&format!("invalid value '{bad}' for '{flag} "))
                    && line.contains(range),
                "{line}"
            );
            assert!(!line.contains('\n'), "{line}");
        }
        assert!(parse(["irqlab", "run", "--timeout", "0", "--vcpus", "8"]).is_ok());
    }

    #[test]
    fn usage_errors_are_one_line_with_the_tip() {
        let line = usage_error(&["run", "--no-such-flag"]);
        assert!(
            line.starts_with("unexpected argument '--no-such-flag' found"),
            "{line}"
        );
        assert!(line.ends_with("(see --help)"), "{line}");
        assert_eq!(
            usage_error(&["bench"]),
            "a subcommand is required: irqlab bench [OPTIONS] <COMMAND> (see --help)"
        );
        assert_eq!(
            usage_error(&["inspect"]),
            "the following required arguments were not provided: <KERNEL> (see --help)"
        );
        assert_eq!(
            usage_error(&["run", "--irqchip", "pic"]),
            "invalid value 'pic' for '--irqchip <IRQCHIP>' [possible values: split, kernel] (see --help)"
        );
    }
}
