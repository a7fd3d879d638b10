//! Entry point: parse the command line, set up tracing, run, map the outcome to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use devstack::cli::Cli;
use devstack::commands::{self, Env};
use devstack::error::{exit, Error};

fn main() -> ExitCode {
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
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let mut env = Env {
        cwd,
        vars: &vars,
        out: &mut out,
        err: &mut err,
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
    match e {
        Error::Config(c) => eprint!("{}", c.render(color)),
        Error::Usage { message, help } => {
            eprintln!("error: {message}");
            if let Some(h) = help {
                eprintln!("  help: {h}");
            }
        }
        // A closed pipe (`devstack config | head`) is not worth a message.
        Error::Output(io) if io.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => eprintln!("error: {other}"),
    }
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
