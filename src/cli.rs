//! The command line (clap derive). Parsing only; `commands` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "devstack",
    version,
    about = "Run a whole development stack — containers and native processes — from one stack.yaml",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 Docker unavailable, 4 port conflict,\n5 service not ready, 6 image unavailable, 7 already up, 8 image build failed, 9 no devstack running,\n10 a service's program is missing,
11 snapshot missing, damaged or badly named, 12 shared services unavailable or in use,
130 interrupted."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Stack file; repeat to merge several in order (later files override earlier ones).
    /// Default: `stack.yaml` in the current folder or the nearest parent that has one.
    /// Before the subcommand (after it, `-f` is `logs --follow`), as in Compose.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Project name (default: `name:` in the stack file, else its folder's name).
    #[arg(
        short = 'p',
        long = "project-name",
        value_name = "NAME",
        global = true,
        env = "DEVSTACK_PROJECT_NAME"
    )]
    pub project_name: Option<String>,

    /// Act on this instance of the project (`<project>-NAME`: its own containers, volumes,
    /// network, state folder and recorded host ports). Default: in a linked git worktree, the
    /// worktree's name; elsewhere the main instance. An empty NAME is the main instance. Without
    /// a stack file at hand (`down`, `ps`, `ports`, `logs` from anywhere), NAME is an instance as
    /// `devstack ls` shows it.
    #[arg(long = "instance", value_name = "NAME", global = true)]
    pub instance: Option<String>,

    /// Variables for interpolation from this file instead of the `.env` beside the stack file;
    /// repeat for several (later files win). The shell environment still wins over them.
    #[arg(long = "env-file", value_name = "FILE", global = true)]
    pub env_files: Vec<PathBuf>,

    /// Enable services of this profile (repeat, or comma-separate); default:
    /// `DEVSTACK_PROFILES`, else `COMPOSE_PROFILES`.
    #[arg(
        long = "profile",
        value_name = "NAME",
        global = true,
        value_delimiter = ','
    )]
    pub profiles: Vec<String>,

    /// devstack's own tracing on stderr (-v debug, -vv trace); before the subcommand.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// No colours (also when `NO_COLOR` is set or output is not a terminal).
    #[arg(long = "no-color", global = true)]
    pub no_color: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the stack files and exit 0, or print every problem and exit 2.
    Validate,

    /// Print the resolved stack (merged, interpolated, defaults filled in).
    Config(ConfigArgs),

    /// Print the dependency graph: start levels, or a tree.
    Graph(GraphArgs),

    /// Start the stack (or the named services and what they depend on) in dependency order.
    Up(UpArgs),

    /// Stop and remove the project's containers and network; `-v` also its named volumes.
    Down(DownArgs),

    /// Build the images of services that have `build:` (all, or the named ones), even when
    /// their build hash is unchanged.
    Build(BuildArgs),

    /// Show the project's services: state, restarts, pid or container, ports, uptime, CPU and
    /// memory (live from the running devstack; from Docker and the state file otherwise).
    Ps(PsArgs),

    /// Show the services' logs: the per-service log files, then with `-f` the live stream of
    /// the running devstack.
    Logs(LogsArgs),

    /// Restart services of the running stack and wait until each is ready again.
    Restart(ControlArgs),

    /// Stop services of the running stack (their dependents keep running) and wait until each
    /// is gone. A service that running thin instances share is refused unless `--force`.
    Stop(StopArgs),

    /// Start services of the running stack, and first what they depend on; wait until ready.
    Start(ControlArgs),

    /// Wait until services of the running stack are ready (exit 5 with the diagnostics if one
    /// does not get ready in time).
    Wait(WaitArgs),

    /// Apply the stack files as they are now to the running stack: only what changed is
    /// restarted, recreated, started or stopped. Exit 2 when the files are invalid (nothing
    /// changes), 9 when nothing runs.
    Apply(ApplyArgs),

    /// Run a command in a service: inside its container, or for a process in its working
    /// folder with its environment.
    Exec(ExecArgs),

    /// Serve the running stack to coding agents: a Model Context Protocol server on stdio.
    Mcp(McpArgs),

    /// Print the published ports of the project (this instance): service, container port, host
    /// port and URL, from the running devstack, else as recorded or written.
    Ports(PortsArgs),

    /// List every instance of every project on this machine: where it was started from,
    /// whether it runs, services ready, ports, dashboard, containers and volumes left.
    Ls(LsArgs),

    /// Print a shell completion script (service names complete from the stack file).
    Completions(CompletionsArgs),

    /// Print devstack's manual page (roff) on standard output.
    Man,

    /// Run a test suite against a throwaway copy of the stack: own project, free host ports,
    /// fresh volumes, torn down whatever happens. The suite's exit code is devstack's.
    Test(TestArgs),

    /// Render the stack for another tool: Kubernetes manifests or a Compose file.
    #[command(subcommand)]
    Render(RenderCommand),

    /// Save, restore, list and remove snapshots of the stack's data (its named volumes).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),

    /// Empty the named volumes of services (all stateful ones, or the named) and start them
    /// fresh. Names the volumes and asks first; `--yes` confirms on the command line.
    Reset(ResetArgs),

    /// Check this machine against the stack: Docker, images, ports, tools, `.env`, inotify.
    /// Exits 1 when something blocks `up`.
    Doctor(DoctorArgs),
}

#[derive(Debug, Subcommand)]
pub enum RenderCommand {
    /// Kubernetes manifests: Namespace, Deployments (StatefulSets for named volumes), Services,
    /// ConfigMaps and Secrets, probes from `ready:`, HPAs and the Ingress from `k8s:` settings.
    /// `devstack render k8s | kubectl apply -f -`
    K8s(RenderArgs),

    /// A Compose file: containers as they are, native processes as commented stubs.
    Compose(RenderArgs),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save the stateful services' volumes (all services with named volumes, or the named
    /// ones) as snapshot NAME, each made consistent first (PostgreSQL: CHECKPOINT and a short
    /// stop; Redis: SAVE; others: a short stop). Replaces an older snapshot of that name.
    Save(SnapshotSaveArgs),

    /// Put the volumes of snapshot NAME back (all services it has, or the named ones); the
    /// services are stopped for it and started again.
    Restore(SnapshotRestoreArgs),

    /// List the project's snapshots, newest first.
    Ls(SnapshotLsArgs),

    /// Remove snapshot NAME.
    Rm(SnapshotRmArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotSaveArgs {
    /// The snapshot's name: letters, digits, `-`, `_`, `.`.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Only these services (default: every service with a named volume).
    #[arg(value_name = "SERVICE", add = service_candidates())]
    pub services: Vec<String>,

    /// Also write the snapshot to FILE as one tar, to hand to someone (`restore --from`).
    #[arg(long, value_name = "FILE")]
    pub to: Option<PathBuf>,

    /// Print the snapshot's manifest as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotRestoreArgs {
    /// The snapshot's name (with `--from`: the name the file is kept under here).
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Only these services (default: every service with a named volume that the snapshot has).
    #[arg(value_name = "SERVICE", add = service_candidates())]
    pub services: Vec<String>,

    /// Import a snapshot file (`save --to`) as NAME first; it is checked whole before anything
    /// is written.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,

    /// Print what was restored as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotLsArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotRmArgs {
    /// The snapshot's name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Only these services (default: every service with a named volume).
    #[arg(value_name = "SERVICE", add = service_candidates())]
    pub services: Vec<String>,

    /// Do not ask: empty the volumes (required when stdin is not a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Only these services (and what they depend on).
    #[arg(value_name = "SERVICE", add = service_candidates())]
    pub services: Vec<String>,

    /// Where to write: `-` for standard output (the default), or a folder (`render k8s`: one
    /// file per kind and service; `render compose`: `compose.yaml`).
    #[arg(short = 'o', long = "output", value_name = "DIR", default_value = "-")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Machine-readable findings.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Only these services (and what they depend on).
    #[arg(value_name = "SERVICE", add = service_candidates())]
    pub services: Vec<String>,

    /// Return once every selected service is ready, leaving it running (for scripts); exit
    /// non-zero with the diagnostics if one does not get ready.
    #[arg(long)]
    pub wait: bool,

    /// Do not restart processes when their files change.
    #[arg(long)]
    pub no_watch: bool,

    /// Do not apply the stack files when they change (`devstack apply` still does).
    #[arg(long)]
    pub no_watch_config: bool,

    /// Publish every port on a free host port instead of the written one (a second copy of a
    /// stack beside the first; `${port:…}` references follow).
    #[arg(long)]
    pub free_ports: bool,

    /// Log lines as JSON objects (`t`, `service`, `stream`, `text`), for tools.
    #[arg(long)]
    pub json: bool,

    /// Serve the web dashboard on this port of 127.0.0.1 (default: a free port, printed at
    /// start-up with its access token).
    #[arg(long, value_name = "PORT", conflicts_with = "no_dashboard")]
    pub dashboard: Option<u16>,

    /// Do not serve the web dashboard.
    #[arg(long)]
    pub no_dashboard: bool,

    /// No interactive terminal view (status line and keys), even on a terminal. It is also off
    /// when stdin or stdout is not a terminal, with `--json`, and when `CI` is set.
    #[arg(long)]
    pub no_tty: bool,

    /// Build every image that has `build:` even when its build hash is unchanged.
    #[arg(long)]
    pub build: bool,

    /// A thin instance: use these services of the running main instance (a database, Redis
    /// index, topic or collection prefix of its own) instead of containers of its own, in place
    /// of `instances.share` in the stack file (`--share ""`: none). Only on an instance beside
    /// the main one.
    #[arg(long, value_name = "SERVICE,...", value_delimiter = ',')]
    pub share: Option<Vec<String>>,

    /// Put snapshot NAME's volumes back first (`devstack snapshot restore NAME`), then start:
    /// the same data every run.
    #[arg(long, value_name = "NAME")]
    pub from_snapshot: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Only these services (default: every service with `build:`).
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// Do not use the engine's layer cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Pull newer versions of the base images.
    #[arg(long)]
    pub pull: bool,

    /// Log lines as JSON objects, for tools.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Services to bring up, comma-separated, with what they depend on (default: every container
    /// service; name app processes to include them).
    #[arg(long, value_delimiter = ',', value_name = "SERVICES")]
    pub services: Vec<String>,

    /// If the suite fails, leave the containers running for a look (processes still stop).
    #[arg(long)]
    pub keep_on_failure: bool,

    /// Start from snapshot NAME of this project: its volumes are restored into the throwaway
    /// copy's fresh volumes first, so the suite gets the same data every run.
    #[arg(long, value_name = "NAME")]
    pub from_snapshot: Option<String>,

    /// The suite to run, after `--`: `devstack test -- pytest -q tests/`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only these services (default: all, and devstack's own events).
    #[arg(value_name = "SERVICE", add = service_candidates())]
    pub services: Vec<String>,

    /// Keep printing new lines as they are written.
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Only the last N lines of each service.
    #[arg(short = 'n', long = "tail", value_name = "N")]
    pub tail: Option<usize>,

    /// The stored JSON records, with each line's `level` and `fields` when it has them.
    #[arg(long)]
    pub json: bool,

    /// Only lines matching this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub grep: Option<String>,

    /// Only lines from this long ago on (`10m`, `1h 30m`); without `--run`, of every run.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<std::time::Duration>,

    /// Only lines of this level and above (trace, debug, info, warn, error, fatal), as the
    /// line says it: JSON `level`, logfmt `level=`, or a leading `ERROR`, `[warn]`, `INFO:`.
    #[arg(long, value_name = "LEVEL")]
    pub level: Option<crate::logs::Level>,

    /// Only lines with this field (a JSON key or logfmt pair); repeat for several.
    #[arg(long = "field", value_name = "KEY=VALUE", value_parser = crate::logs::query::field_arg)]
    pub fields: Vec<(String, String)>,

    /// Which run (`up`): 0 the current or last one (the default), -1 the one before, a run id,
    /// or `all`.
    #[arg(long, value_name = "RUN", allow_hyphen_values = true)]
    pub run: Option<crate::logs::query::RunSelector>,
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The services.
    #[arg(value_name = "SERVICE", required = true, add = service_candidates())]
    pub services: Vec<String>,

    /// Return once the command is taken, without waiting.
    #[arg(long)]
    pub no_wait: bool,

    /// Give up waiting after this long (exit 5), e.g. `60s`. Default: wait as long as it takes
    /// (a crash or a failed probe ends the wait at once).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,

    /// Print the services' states at the end as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub control: ControlArgs,

    /// Stop a service even while thin instances share it (they are listed).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The services (default: all of the run).
    #[arg(value_name = "SERVICE", add = service_candidates())]
    pub services: Vec<String>,

    /// Give up after this long (exit 5), e.g. `30s`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Only print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The service.
    #[arg(value_name = "SERVICE", add = service_candidates())]
    pub service: String,

    /// Keep stdin open and attached even if it is not a terminal (containers).
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// No pseudo-terminal, even if stdin is one (containers).
    #[arg(short = 'T', long = "no-tty")]
    pub no_tty: bool,

    /// The command, after `--`: `devstack exec postgres -- psql -U user`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct McpArgs {
    /// Offer only the tools that change nothing (`ps`, `logs`, `wait`, `config`).
    #[arg(long)]
    pub read_only: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Service names for shell completion, from the stack file found from the current folder.
fn service_candidates() -> clap_complete::engine::ArgValueCandidates {
    clap_complete::engine::ArgValueCandidates::new(|| {
        crate::config::service_names_here()
            .into_iter()
            .map(clap_complete::CompletionCandidate::new)
            .collect()
    })
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also remove the project's named volumes (their data is lost).
    #[arg(short = 'v', long)]
    pub volumes: bool,

    /// Also remove containers of this project whose service is no longer in the stack file.
    #[arg(long)]
    pub remove_orphans: bool,

    /// Stop a main instance even while thin instances use its services (they are listed).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PortsArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// JSON instead of YAML.
    #[arg(long)]
    pub json: bool,

    /// Print the values of secret-looking keys (`*PASSWORD*`, `*SECRET*`, `*KEY*`, `*TOKEN*`)
    /// and passwords in URLs instead of masking them.
    #[arg(long)]
    pub show_secrets: bool,

    /// Print only the service names, one per line.
    #[arg(long, conflicts_with_all = ["json", "show_secrets"])]
    pub services: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Only these services and what they depend on.
    #[arg(value_name = "SERVICE", add = service_candidates())]
    pub services: Vec<String>,

    /// Show a dependency tree instead of start levels.
    #[arg(long, conflicts_with = "json")]
    pub tree: bool,

    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        // clap's own checks: unique short options per subcommand (global ones included), etc.
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
