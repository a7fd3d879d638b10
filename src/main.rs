//! Entry point: parse the command line, set up tracing, run, map the outcome to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use devstack::cli::Cli;
use devstack::commands::{self, Env};
use devstack::error::{exit, Error};

fn main() -> ExitCode {
    one_malloc_arena();
    // `COMPLETE=bash devstack -- …`: the shell asks for completions (see `devstack completions`).
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command).complete();
    let cli = Cli::parse();
    let color = !cli.global.no_color
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stderr().is_terminal();
    init_tracing(cli.global.verbose, color);

    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot read the current folder: {e}");
            return ExitCode::from(exit::FAILURE as u8);
        }
    };
    let vars = |k: &str| std::env::var(k).ok();
    // Unlocked handles: the log writer thread and tracing write to the same streams.
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let mut env = Env {
        cwd,
        vars: &vars,
        out: &mut out,
        err: &mut err,
        no_color: cli.global.no_color,
    };
    let result = commands::run(&cli, &mut env);
    drop(env);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e, color);
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn report(e: &Error, color: bool) {
    eprint!("{}", e.render(color));
}

fn init_tracing(verbose: u8, color: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "devstack=debug,info",
        _ => "devstack=trace,debug",
    };
    let filter =
        EnvFilter::try_from_env("DEVSTACK_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .init();
}

/// One allocator arena for the whole process instead of glibc's default of one per thread that
/// allocates (up to eight per core). In a log flood the pipe readers allocate each line on the
/// runtime's threads and the log writer frees it on its own, so every thread's arena held a
/// share of the lines in flight: with one, devstack's peak RSS in `bench/logs-vs-honcho.py` is
/// about 1 MiB lower (15.7-15.8 MiB against 16.8-16.9, the flood no slower), and about the same
/// with 100 chatty services and the dashboard open (`bench/dashboard-load.py`: 21.1 against
/// 20.9 MiB). Set first, before any thread exists; a user's own `MALLOC_ARENA_MAX` or glibc
/// tunables win.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none()
        && std::env::var_os("GLIBC_TUNABLES").is_none()
    {
        // SAFETY: mallopt only sets a tunable of glibc's allocator. Its result is not needed:
        // where it fails, the default stays, which is only a little larger.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
