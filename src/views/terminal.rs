//! The interactive terminal view of `devstack up`: the merged log keeps streaming in the normal
//! screen (scrollback, copy and paste and `less` habits keep working), one status line is
//! pinned under it, and single keys act on the stack through its handle (`o` hands the
//! dashboard's URL to `xdg-open`); the keys are listed in [`HELP`] and docs/control.md. A
//! subscriber of the stack's events and a caller of its handle: what it decides is only what
//! to show. The log writer owns the terminal; this view only sends it [`ScreenCommand`]s.
//!
//! Terminal modes: canonical input and echo go off (keys arrive one by one, unseen); signals
//! stay on, so Ctrl-C is the same interrupt as without the view. The modes are restored on
//! every exit path: the guard's drop, a panic (hook), and the signal path's hard exit.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::style::{Color, Stylize};
use tokio::sync::{broadcast, mpsc};

use crate::engine::{ServiceStatus, StackHandle};
use crate::event::{ChangeAction, ServiceState, StackEvent};
use crate::logs::mux::Published;
use crate::logs::screen::ScreenCommand;
use crate::logs::LogHandle;

/// The key list, shown by `?` (and in docs/control.md, "The terminal view").
pub(crate) const HELP: &[&str] = &[
    "keys:",
    "  r  restart a service (type to narrow the list, Enter picks, Esc cancels)",
    "  s  stop a running service, or start a stopped one",
    "  f  show only some services from now on (names or parts of names; empty: all)",
    "  /  highlight a regex in what is printed from now on;  c  clear the highlight",
    "  e  print the last error of a service (a crash, or its last error-level line), with its last lines",
    "  o  open the dashboard in a browser (or print its URL)",
    "  ?  this help",
    "  q  stop everything and quit, as Ctrl-C does (Ctrl-C again kills at once)",
];

/// How much of a build step's instruction the status line shows.
const BUILD_STEP_CHARS: usize = 28;

/// The marks of the status line, in the order their counts are shown.
const MARKS: [(&str, Color); 5] = [
    ("●", Color::Green),
    ("◐", Color::Yellow),
    ("↻", Color::DarkYellow),
    ("✗", Color::Red),
    ("○", Color::DarkGrey),
];

const KEYS: &str =
    "r restart · s stop/start · f filter · / highlight · e error · o dashboard · ? help · q quit";

/// Whether `up` gets the interactive view: stdin and stdout are terminals and this is not CI.
pub(crate) fn wanted(ci: Option<String>) -> bool {
    let ci = ci.is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    !ci && std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

// ---- terminal modes -------------------------------------------------------------------------

static ORIGINAL: OnceLock<libc::termios> = OnceLock::new();

/// Puts the original terminal modes back (idempotent; a no-op when they were never changed).
/// Also called on the signal path's hard exit.
pub(crate) fn restore() {
    if let Some(t) = ORIGINAL.get() {
        // SAFETY: `t` is a termios read from this same fd by tcgetattr.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t) };
    }
}

/// Keys one by one, without echo, while it lives.
pub(crate) struct TtyGuard(());

impl TtyGuard {
    pub(crate) fn enter() -> std::io::Result<Self> {
        // SAFETY: tcgetattr fills the zeroed termios we own.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let _ = ORIGINAL.set(t);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        // ISIG stays: Ctrl-C remains the interrupt it always was. OPOST stays: `\n` still
        // returns the carriage.
        t.c_lflag &= !(libc::ICANON | libc::ECHO);
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        // SAFETY: a termios derived from the one the terminal gave us.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(()))
    }
}

impl Drop for TtyGuard {
    fn drop(&mut self) {
        restore();
    }
}

// ---- the view: keys and events in, what to do out (pure) ------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    Restart,
    StopStart,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prompt {
    Filter,
    Highlight,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Normal,
    Picking { what: Pick, query: String },
    Typing { what: Prompt, text: String },
}

/// What the view asks for.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    Restart(String),
    Stop(String),
    Start(String),
    /// Print the service's last error and its last lines.
    ShowError(String),
    Screen(ScreenCommand),
    Print(Vec<String>),
    OpenDashboard,
    /// Stop everything, as Ctrl-C.
    Interrupt,
}

pub(crate) struct View {
    services: Vec<String>,
    states: HashMap<String, ServiceState>,
    mode: Mode,
    filter: Option<Vec<String>>,
    highlight: Option<String>,
    /// The last error of each service, as a person reads it.
    errors: HashMap<String, String>,
    /// The last line of each service whose level is error or fatal.
    error_lines: HashMap<String, String>,
    /// Image builds under way: the step each has reached, of how many, and its instruction.
    building: std::collections::BTreeMap<String, (usize, usize, String)>,
    /// The first line of the stack files' error, while they are invalid.
    config_error: Option<String>,
    color: bool,
}

fn running(s: Option<&ServiceState>) -> bool {
    matches!(
        s,
        Some(
            ServiceState::Waiting
                | ServiceState::Starting
                | ServiceState::Probing
                | ServiceState::Seeding
                | ServiceState::Ready
                | ServiceState::Backoff { .. }
        )
    )
}

impl View {
    pub(crate) fn new(services: Vec<String>, color: bool) -> Self {
        Self {
            services,
            states: HashMap::new(),
            mode: Mode::Normal,
            filter: None,
            highlight: None,
            errors: HashMap::new(),
            error_lines: HashMap::new(),
            building: std::collections::BTreeMap::new(),
            config_error: None,
            color,
        }
    }

    pub(crate) fn snapshot(&mut self, snapshot: &[ServiceStatus]) {
        self.states = snapshot
            .iter()
            .map(|s| (s.service.to_string(), s.state.clone()))
            .collect();
    }

    /// Remembers errors, for `e`.
    pub(crate) fn event(&mut self, e: &StackEvent) {
        match e {
            StackEvent::BuildStep {
                service,
                step,
                of,
                instruction,
            } => {
                self.building
                    .insert(service.to_string(), (*step, *of, instruction.clone()));
            }
            StackEvent::Built { services, .. } => {
                for s in services {
                    self.building.remove(s.as_str());
                }
            }
            StackEvent::State {
                service,
                state: ServiceState::Failed { .. },
            } => {
                self.building.remove(service.as_str());
            }
            StackEvent::ConfigInvalid { error } => {
                let first = error.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                let first = first.trim().trim_start_matches("error: ").to_string();
                self.config_error = Some(first);
            }
            StackEvent::ConfigApplied {
                changes,
                dry_run: false,
            } => {
                self.config_error = None;
                for c in changes {
                    match c.action {
                        ChangeAction::Start if !self.services.iter().any(|s| *s == c.service) => {
                            self.services.push(c.service.to_string());
                        }
                        ChangeAction::Stop => self.services.retain(|s| s != &c.service),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        let said = match e {
            StackEvent::NotReady {
                service,
                probe,
                reason,
                ..
            } => Some((service, format!("not ready: {reason} (probe: {probe})"))),
            StackEvent::Backoff {
                service,
                code,
                crashes,
                ..
            } => Some((
                service,
                format!("exited with code {code} ({crashes} crash(es) in the last minute)"),
            )),
            StackEvent::Exited { service, code } if *code != 0 => {
                Some((service, format!("exited with code {code}")))
            }
            StackEvent::State {
                service,
                state: ServiceState::Failed { reason },
            } => Some((service, format!("failed: {reason}"))),
            _ => None,
        };
        if let Some((service, text)) = said {
            self.errors.insert(service.to_string(), text);
        }
    }

    /// Remembers a service's lines of level error and above, for `e`.
    pub(crate) fn line(&mut self, l: &crate::logs::LogLine) {
        if l.level >= Some(crate::logs::Level::Error) && l.stream != crate::logs::Stream::Event {
            self.error_lines
                .insert(l.source.to_string(), l.text.clone());
        }
    }

    pub(crate) fn last_error(&self, service: &str) -> Option<&str> {
        self.errors.get(service).map(String::as_str)
    }

    /// The service's last line of level error or above.
    pub(crate) fn last_error_line(&self, service: &str) -> Option<&str> {
        self.error_lines.get(service).map(String::as_str)
    }

    /// What `e` prints first about `service`: its last error and its last error line.
    pub(crate) fn error_report(&self, service: &str) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(e) = self.last_error(service) {
            lines.push(format!("{service}: {e}"));
        }
        if let Some(l) = self.last_error_line(service) {
            lines.push(format!("{service}: last error line: {l}"));
        }
        if lines.is_empty() {
            lines.push(format!("{service}: no error recorded"));
        }
        lines
    }

    /// Services a pick can choose from now.
    fn candidates(&self, what: Pick) -> Vec<&str> {
        self.services
            .iter()
            .filter(|s| {
                what != Pick::Error
                    || self.errors.contains_key(*s)
                    || self.error_lines.contains_key(*s)
            })
            .map(String::as_str)
            .collect()
    }

    fn matches<'a>(&'a self, what: Pick, query: &str) -> Vec<&'a str> {
        let q = query.to_lowercase();
        self.candidates(what)
            .into_iter()
            .filter(|s| s.to_lowercase().contains(&q))
            .collect()
    }

    pub(crate) fn key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if k.kind != KeyEventKind::Press {
            return Vec::new();
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.normal_key(k),
            Mode::Picking { what, mut query } => match k.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter => {
                    let found = self.matches(what, &query);
                    let chosen = found
                        .iter()
                        .find(|s| **s == query)
                        .or(found.first())
                        .map(|s| s.to_string());
                    match chosen {
                        None => vec![Effect::Print(vec![format!("no service matches `{query}`")])],
                        Some(s) => vec![match what {
                            Pick::Restart => Effect::Restart(s),
                            Pick::StopStart if running(self.states.get(&s)) => Effect::Stop(s),
                            Pick::StopStart => Effect::Start(s),
                            Pick::Error => Effect::ShowError(s),
                        }],
                    }
                }
                KeyCode::Backspace => {
                    query.pop();
                    self.mode = Mode::Picking { what, query };
                    Vec::new()
                }
                KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                    query.push(c);
                    self.mode = Mode::Picking { what, query };
                    Vec::new()
                }
                _ => {
                    self.mode = Mode::Picking { what, query };
                    Vec::new()
                }
            },
            Mode::Typing { what, mut text } => match k.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter => self.submit(what, &text),
                KeyCode::Backspace => {
                    text.pop();
                    self.mode = Mode::Typing { what, text };
                    Vec::new()
                }
                KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                    text.push(c);
                    self.mode = Mode::Typing { what, text };
                    Vec::new()
                }
                _ => {
                    self.mode = Mode::Typing { what, text };
                    Vec::new()
                }
            },
        }
    }

    fn normal_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        let KeyCode::Char(c) = k.code else {
            return Vec::new();
        };
        if k.modifiers.contains(KeyModifiers::CONTROL) {
            return Vec::new();
        }
        let pick = |what| Mode::Picking {
            what,
            query: String::new(),
        };
        match c {
            'r' => self.mode = pick(Pick::Restart),
            's' => self.mode = pick(Pick::StopStart),
            'e' => {
                let with_errors = self.candidates(Pick::Error);
                match with_errors.as_slice() {
                    [] => {
                        return vec![Effect::Print(vec![
                            "no service has failed or logged an error".into(),
                        ])]
                    }
                    [one] => return vec![Effect::ShowError(one.to_string())],
                    _ => self.mode = pick(Pick::Error),
                }
            }
            'f' => {
                self.mode = Mode::Typing {
                    what: Prompt::Filter,
                    text: self
                        .filter
                        .as_ref()
                        .map(|f| f.join(" "))
                        .unwrap_or_default(),
                }
            }
            '/' => {
                self.mode = Mode::Typing {
                    what: Prompt::Highlight,
                    text: String::new(),
                }
            }
            'c' => {
                self.highlight = None;
                return vec![Effect::Screen(ScreenCommand::Highlight(None))];
            }
            'o' => return vec![Effect::OpenDashboard],
            '?' | 'h' => return vec![Effect::Print(HELP.iter().map(|l| l.to_string()).collect())],
            'q' => return vec![Effect::Interrupt],
            _ => {}
        }
        Vec::new()
    }

    fn submit(&mut self, what: Prompt, text: &str) -> Vec<Effect> {
        match what {
            Prompt::Filter => {
                let terms: Vec<String> = text
                    .split([' ', ','])
                    .filter(|t| !t.is_empty())
                    .map(str::to_lowercase)
                    .collect();
                if terms.is_empty() {
                    self.filter = None;
                    return vec![Effect::Screen(ScreenCommand::Filter(None))];
                }
                let chosen: Vec<String> = self
                    .services
                    .iter()
                    .filter(|s| terms.iter().any(|t| s.to_lowercase().contains(t)))
                    .cloned()
                    .collect();
                if chosen.is_empty() {
                    return vec![Effect::Print(vec![format!(
                        "no service matches `{text}`; the filter is unchanged"
                    )])];
                }
                let set: HashSet<String> = chosen.iter().cloned().collect();
                self.filter = Some(chosen);
                vec![Effect::Screen(ScreenCommand::Filter(Some(set)))]
            }
            Prompt::Highlight => {
                if text.is_empty() {
                    self.highlight = None;
                    return vec![Effect::Screen(ScreenCommand::Highlight(None))];
                }
                match regex::Regex::new(text) {
                    Ok(re) => {
                        self.highlight = Some(text.to_string());
                        vec![Effect::Screen(ScreenCommand::Highlight(Some(re)))]
                    }
                    Err(e) => vec![Effect::Print(vec![format!("not a regex: {e}")])],
                }
            }
        }
    }

    fn paint(&self, text: &str, color: Color) -> String {
        if self.color {
            text.with(color).to_string()
        } else {
            text.to_string()
        }
    }

    /// The status line, at most `width` columns wide.
    pub(crate) fn status(&self, width: usize) -> String {
        // (visible text, colour) pieces, laid out until the width is used.
        let mut pieces: Vec<(String, Option<Color>)> = Vec::new();
        match &self.mode {
            Mode::Picking { what, query } => {
                let verb = match what {
                    Pick::Restart => "restart",
                    Pick::StopStart => "stop/start",
                    Pick::Error => "last error of",
                };
                pieces.push((format!("{verb} ▸ {query}▏ "), Some(Color::Cyan)));
                let found = self.matches(*what, query);
                if found.is_empty() {
                    pieces.push(("(no match) ".into(), Some(Color::Red)));
                }
                pieces.push(("Enter picks · Esc cancels · ".into(), None));
                for s in found {
                    pieces.push((format!("{s} "), None));
                }
            }
            Mode::Typing { what, text } => {
                let label = match what {
                    Prompt::Filter => "show only (names or parts, empty: all)",
                    Prompt::Highlight => "highlight regex",
                };
                pieces.push((format!("{label} ▸ {text}▏ "), Some(Color::Cyan)));
                pieces.push(("Enter applies · Esc cancels".into(), None));
            }
            Mode::Normal => {
                let mut ready = 0;
                let mut marks: Vec<(&str, Color)> = Vec::new();
                for s in &self.services {
                    let (mark, color) = match self.states.get(s) {
                        Some(ServiceState::Ready | ServiceState::Completed) => {
                            ready += 1;
                            ("●", Color::Green)
                        }
                        Some(
                            ServiceState::Waiting
                            | ServiceState::Starting
                            | ServiceState::Probing
                            | ServiceState::Seeding
                            | ServiceState::Stopping,
                        )
                        | None => ("◐", Color::Yellow),
                        Some(ServiceState::Backoff { .. }) => ("↻", Color::DarkYellow),
                        Some(ServiceState::Crashed { .. } | ServiceState::Failed { .. }) => {
                            ("✗", Color::Red)
                        }
                        Some(ServiceState::Stopped | ServiceState::Exited { .. }) => {
                            ("○", Color::DarkGrey)
                        }
                    };
                    marks.push((mark, color));
                }
                if marks.len() <= width / 2 {
                    for (mark, color) in marks {
                        pieces.push((mark.to_string(), Some(color)));
                    }
                } else {
                    // Too many services for a mark each: how many of each kind.
                    for (i, (kind, color)) in MARKS.iter().enumerate() {
                        let n = marks.iter().filter(|(m, _)| m == kind).count();
                        if n > 0 {
                            let sep = if i == 0 { "" } else { " " };
                            pieces.push((format!("{sep}{kind}{n}"), Some(*color)));
                        }
                    }
                }
                pieces.push((
                    format!(" {ready}/{} ready", self.services.len()),
                    Some(Color::White),
                ));
                if !self.building.is_empty() {
                    let steps: Vec<String> = self
                        .building
                        .iter()
                        .map(|(s, (n, of, ins))| {
                            // The current step's instruction, shortened: the log has it whole.
                            let ins: String = ins.split_whitespace().collect::<Vec<_>>().join(" ");
                            let short: String = if ins.chars().count() > BUILD_STEP_CHARS {
                                ins.chars()
                                    .take(BUILD_STEP_CHARS - 1)
                                    .chain(['…'])
                                    .collect()
                            } else {
                                ins
                            };
                            format!("{s} {n}/{of} {short}")
                        })
                        .collect();
                    pieces.push((
                        format!(" · building {}", steps.join(", ")),
                        Some(Color::Cyan),
                    ));
                }
                if let Some(e) = &self.config_error {
                    pieces.push((format!(" · config not applied: {e}"), Some(Color::Red)));
                }
                if let Some(f) = &self.filter {
                    pieces.push((format!(" · filter: {}", f.join(",")), Some(Color::Cyan)));
                }
                if let Some(h) = &self.highlight {
                    pieces.push((format!(" · highlight: /{h}/"), Some(Color::Cyan)));
                }
                pieces.push((format!(" · {KEYS}"), Some(Color::DarkGrey)));
            }
        }
        let mut out = String::new();
        let mut left = width.saturating_sub(1);
        for (text, color) in pieces {
            let n = text.chars().count();
            let shown: String = if n <= left {
                text
            } else {
                text.chars()
                    .take(left.saturating_sub(1))
                    .chain(['…'])
                    .collect()
            };
            left = left.saturating_sub(shown.chars().count());
            out.push_str(&match color {
                Some(c) => self.paint(&shown, c),
                None => shown,
            });
            if left == 0 {
                break;
            }
        }
        out
    }
}

// ---- the view's task ------------------------------------------------------------------------

/// Reads keys on a thread of its own (crossterm's reader blocks) until the view is gone.
fn spawn_key_reader() -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("devstack-keys".into())
        .spawn(move || {
            while !tx.is_closed() {
                match crossterm::event::poll(Duration::from_millis(100)) {
                    Ok(true) => match crossterm::event::read() {
                        Ok(ev) => {
                            if tx.send(ev).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    },
                    Ok(false) => {}
                    Err(_) => return,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot read keys: {e}");
    }
    rx
}

pub(crate) struct Setup {
    pub handle: StackHandle,
    pub logs: LogHandle,
    pub services: Vec<String>,
    pub color: bool,
    pub dashboard: Option<String>,
    /// The interrupt path (`q` is Ctrl-C).
    pub interrupt: mpsc::UnboundedSender<()>,
}

fn width() -> usize {
    crossterm::terminal::size().map_or(80, |(w, _)| w as usize)
}

/// Runs the view until the engine ends; the status line goes with it.
pub(crate) async fn run(s: Setup) {
    let Setup {
        handle,
        logs,
        services,
        color,
        dashboard,
        interrupt,
    } = s;
    let mut view = View::new(services, color);
    let mut keys = spawn_key_reader();
    let mut events = handle.subscribe();
    let mut changes = handle.clone();
    view.snapshot(&handle.snapshot());
    let mut shown = String::new();
    loop {
        let mut effects = Vec::new();
        tokio::select! {
            alive = changes.changed() => {
                if !alive {
                    break;
                }
                view.snapshot(&handle.snapshot());
            }
            got = events.recv() => match got {
                Ok(Published::Event { event, .. }) => view.event(&event),
                Ok(Published::Line(line)) => view.line(&line),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(ev) = keys.recv() => match ev {
                Event::Key(k) => effects = view.key(k),
                Event::Resize(..) => shown.clear(),
                _ => {}
            },
        }
        for e in effects {
            match e {
                Effect::Restart(s) => {
                    handle.restart(&s);
                }
                Effect::Stop(s) => {
                    handle.stop(&s);
                }
                Effect::Start(s) => {
                    handle.start(&s);
                }
                Effect::Interrupt => {
                    // The receiver lives as long as the run; after it nothing needs stopping.
                    let _ = interrupt.send(());
                }
                Effect::ShowError(s) => {
                    let mut lines = view.error_report(&s);
                    let tail = logs.tail(&s).await;
                    if !tail.is_empty() {
                        lines.push(format!("{s}: last {} lines:", tail.len()));
                        lines.extend(tail.into_iter().map(|l| format!("  {l}")));
                    }
                    logs.screen(ScreenCommand::Print(lines)).await;
                }
                Effect::OpenDashboard => {
                    let line = match &dashboard {
                        None => "the dashboard is off (`--no-dashboard`)".to_string(),
                        Some(url) => match open_in_browser(url) {
                            true => format!("opening the dashboard: {url}"),
                            false => format!("dashboard: {url}"),
                        },
                    };
                    logs.screen(ScreenCommand::Print(vec![line])).await;
                }
                Effect::Print(lines) => logs.screen(ScreenCommand::Print(lines)).await,
                Effect::Screen(cmd) => logs.screen(cmd).await,
            }
        }
        let status = view.status(width());
        if status != shown {
            logs.screen(ScreenCommand::Status(status.clone())).await;
            shown = status;
        }
    }
    logs.screen(ScreenCommand::Status(String::new())).await;
}

/// `xdg-open URL` when there is one; `false` when the URL must be printed instead.
fn open_in_browser(url: &str) -> bool {
    let Some(opener) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("xdg-open"))
            .find(|f| f.is_file())
    }) else {
        return false;
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn code(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn typed(v: &mut View, s: &str) -> Vec<Effect> {
        s.chars().flat_map(|c| v.key(key(c))).collect()
    }

    fn view() -> View {
        let mut v = View::new(
            vec![
                "postgres".into(),
                "core-service".into(),
                "ai-service".into(),
            ],
            false,
        );
        let st = |s: &str, state| ServiceStatus {
            service: s.into(),
            kind: crate::config::Kind::Process,
            state,
            detail: None,
            restarts: 0,
            pid: None,
            container: None,
            started_at_ms: None,
            epoch: 1,
            running: true,
            ports: Vec::new(),
        };
        v.snapshot(&[
            st("postgres", ServiceState::Ready),
            st("core-service", ServiceState::Ready),
            st("ai-service", ServiceState::Stopped),
        ]);
        v
    }

    #[test]
    fn the_status_line_shows_each_build_step_until_the_image_is_there() {
        let mut v = view();
        let step = |service: &str, step| StackEvent::BuildStep {
            service: service.into(),
            step,
            of: 12,
            instruction: "RUN apt-get install -y postgresql-15".into(),
        };
        v.event(&step("postgres", 3));
        v.event(&step("redis", 1));
        v.event(&step("postgres", 4));
        let s = v.status(200);
        assert!(
            s.starts_with("●●○ 2/3 ready · building postgres 4/12 RUN apt-get install -y post…, redis 1/12 RUN apt-get install -y post… · r restart"),
            "{s}"
        );
        v.event(&StackEvent::Built {
            service: "postgres".into(),
            services: vec!["postgres".into()],
            image: "postgres:15".into(),
            id: "sha256:1".into(),
            how: crate::event::BuildHow::Built,
            context_bytes: Some(1),
            after_ms: 1,
        });
        let s = v.status(200);
        assert!(
            s.starts_with(
                "●●○ 2/3 ready · building redis 1/12 RUN apt-get install -y post… · r restart"
            ),
            "{s}"
        );
    }

    #[test]
    fn the_status_line_says_when_the_stack_files_are_not_applied_and_follows_the_plan() {
        let mut v = view();
        v.event(&StackEvent::ConfigInvalid {
            error: "error: `services.api.ports[0]`: `80800` is not a port\n  --> stack.yaml:4:14\n"
                .into(),
        });
        let s = v.status(200);
        assert!(
            s.starts_with("●●○ 2/3 ready · config not applied: `services.api.ports[0]`: `80800` is not a port · r restart"),
            "{s}"
        );
        let change = |service: &str, action| crate::event::ConfigChange {
            service: service.into(),
            action,
            causes: Vec::new(),
        };
        v.event(&StackEvent::ConfigApplied {
            changes: vec![
                change("ai-service", ChangeAction::Stop),
                change("worker", ChangeAction::Start),
            ],
            dry_run: false,
        });
        let s = v.status(200);
        assert!(s.starts_with("●●◐ 2/3 ready · r restart"), "{s}");
    }

    #[test]
    fn the_status_line_counts_ready_services_and_fits_the_width() {
        let v = view();
        let s = v.status(200);
        assert!(s.starts_with("●●○ 2/3 ready · r restart"), "{s}");
        let narrow = v.status(12);
        assert!(narrow.starts_with("●●○ 2/3"), "{narrow}");
        assert_eq!(narrow.chars().count(), 11);
        assert!(narrow.ends_with('…'), "{narrow}");
        // More services than half the width: counts per kind, so `n/N ready` still shows.
        let crowded = v.status(5);
        assert_eq!(crowded, "●2 …");
        let mut many = View::new((0..100).map(|i| format!("s{i}")).collect(), false);
        many.snapshot(
            &(0..100)
                .map(|i| ServiceStatus {
                    service: format!("s{i}").into(),
                    kind: crate::config::Kind::Process,
                    state: if i < 97 {
                        ServiceState::Ready
                    } else {
                        ServiceState::Crashed { code: 1 }
                    },
                    detail: None,
                    restarts: 0,
                    pid: None,
                    container: None,
                    started_at_ms: None,
                    epoch: 1,
                    running: true,
                    ports: Vec::new(),
                })
                .collect::<Vec<_>>(),
        );
        assert!(
            many.status(80).starts_with("●97 ✗3 97/100 ready · "),
            "{}",
            many.status(80)
        );
    }

    #[test]
    fn r_and_a_name_restart_that_service() {
        let mut v = view();
        assert!(typed(&mut v, "rcore").is_empty());
        assert!(v.status(200).starts_with("restart ▸ core▏"));
        let e = v.key(code(KeyCode::Enter));
        assert!(
            matches!(&e[..], [Effect::Restart(s)] if s == "core-service"),
            "{e:?}"
        );
        assert!(v.status(200).contains("2/3 ready"));
        // An exact name wins over a longer match; Esc cancels.
        typed(&mut v, "rx");
        assert!(v.key(code(KeyCode::Esc)).is_empty());
        assert!(v.status(200).contains("2/3 ready"));
    }

    #[test]
    fn s_stops_what_runs_and_starts_what_does_not() {
        let mut v = view();
        typed(&mut v, "spost");
        let e = v.key(code(KeyCode::Enter));
        assert!(matches!(&e[..], [Effect::Stop(s)] if s == "postgres"));
        typed(&mut v, "sai");
        let e = v.key(code(KeyCode::Enter));
        assert!(matches!(&e[..], [Effect::Start(s)] if s == "ai-service"));
        typed(&mut v, "snope");
        let e = v.key(code(KeyCode::Enter));
        assert!(matches!(&e[..], [Effect::Print(_)]));
    }

    #[test]
    fn f_filters_and_the_status_line_says_so() {
        let mut v = view();
        typed(&mut v, "fcore post");
        let e = v.key(code(KeyCode::Enter));
        match &e[..] {
            [Effect::Screen(ScreenCommand::Filter(Some(set)))] => {
                assert_eq!(set.len(), 2);
                assert!(set.contains("postgres") && set.contains("core-service"));
            }
            other => panic!("{other:?}"),
        }
        assert!(v.status(200).contains("filter: postgres,core-service"));
        // `f` again starts from the current filter; emptied, it shows everything.
        v.key(key('f'));
        for _ in 0..40 {
            v.key(code(KeyCode::Backspace));
        }
        let e = v.key(code(KeyCode::Enter));
        assert!(matches!(
            &e[..],
            [Effect::Screen(ScreenCommand::Filter(None))]
        ));
        assert!(!v.status(200).contains("filter:"));
    }

    #[test]
    fn slash_highlights_c_clears_and_a_bad_regex_is_said() {
        let mut v = view();
        typed(&mut v, "/err(or)?");
        let e = v.key(code(KeyCode::Enter));
        assert!(matches!(
            &e[..],
            [Effect::Screen(ScreenCommand::Highlight(Some(_)))]
        ));
        assert!(v.status(200).contains("highlight: /err(or)?/"));
        let e = v.key(key('c'));
        assert!(matches!(
            &e[..],
            [Effect::Screen(ScreenCommand::Highlight(None))]
        ));
        typed(&mut v, "/(");
        let e = v.key(code(KeyCode::Enter));
        assert!(matches!(&e[..], [Effect::Print(l)] if l[0].starts_with("not a regex")));
    }

    #[test]
    fn e_shows_the_one_failed_service_or_picks_among_several() {
        let mut v = view();
        assert!(matches!(&v.key(key('e'))[..], [Effect::Print(_)]));
        v.event(&StackEvent::Exited {
            service: "core-service".into(),
            code: 3,
        });
        assert!(matches!(&v.key(key('e'))[..], [Effect::ShowError(s)] if s == "core-service"));
        assert_eq!(v.last_error("core-service"), Some("exited with code 3"));
        v.event(&StackEvent::State {
            service: "postgres".into(),
            state: ServiceState::Failed {
                reason: "no".into(),
            },
        });
        assert!(v.key(key('e')).is_empty());
        typed(&mut v, "post");
        assert!(
            matches!(&v.key(code(KeyCode::Enter))[..], [Effect::ShowError(s)] if s == "postgres")
        );
    }

    #[test]
    fn e_also_finds_a_running_service_s_last_error_level_line() {
        let mut v = view();
        let out = |text: &str| {
            crate::logs::LogLine::output(
                std::time::UNIX_EPOCH,
                "core-service",
                crate::logs::Stream::Stdout,
                text.into(),
            )
        };
        v.line(&out("error_count=0 all good"));
        v.line(&out("[info] fine"));
        assert!(
            matches!(&v.key(key('e'))[..], [Effect::Print(_)]),
            "no level error yet"
        );
        v.line(&out(r#"{"level":"error","msg":"db down"}"#));
        v.line(&out("WARNING: slow"));
        assert!(matches!(&v.key(key('e'))[..], [Effect::ShowError(s)] if s == "core-service"));
        assert_eq!(
            v.error_report("core-service"),
            [r#"core-service: last error line: {"level":"error","msg":"db down"}"#]
        );
    }

    #[test]
    fn q_interrupts_and_question_mark_helps() {
        let mut v = view();
        assert!(matches!(&v.key(key('q'))[..], [Effect::Interrupt]));
        assert!(matches!(&v.key(key('?'))[..], [Effect::Print(l)] if l == HELP));
    }
}
