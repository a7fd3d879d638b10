//! The composition root of a running stack (`up`, `test`): a [`Session`] owns the tokio
//! runtime, the signal handling, the log mux and the stack's handle; it picks the container
//! engine ([`ContainerEngine`]), serves the control socket beside the engine for as long as it
//! runs, and takes the terminal view and the web dashboard as optional subscribers. It decides
//! nothing about services: the engine does. The project's lock stays with `up`, which takes it
//! before anything starts (`test`'s throwaway project needs none). Commands that need no running
//! stack (`down`, `ps`, `build`, the control verbs) only borrow its [`runtime`].

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

mod engine;

pub(crate) use engine::ContainerEngine;

use crate::config::Stack;
use crate::engine::{Inbox, StackHandle, UpOutcome, UpRequest};
use crate::error::Error;
use crate::event::StackEvent;
use crate::logs::{Format, LogHandle};
use crate::redact::Redactor;
use crate::views::terminal::TtyGuard;
use crate::views::web::{Dashboard, StackInfo, UsageSource};

/// The async runtime a command talks to engines and sockets on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Engine(format!("cannot start the async runtime: {e}")))
}

/// Where a session's merged log goes.
pub(crate) struct LogSetup {
    /// The terminal stream it is written to.
    pub out: Box<dyn Write + Send>,
    pub format: Format,
    /// The folder of the per-service log files; none keeps no files.
    pub files: Option<crate::logs::files::FileSetup>,
    /// The secret values masked in every line.
    pub redact: Redactor,
}

/// One running stack and everything wired around it. Ended with [`Session::finish`], which
/// makes sure no log line is lost.
pub(crate) struct Session {
    // Dropped last (after the views and the writer), as a function's locals would be.
    rt: tokio::runtime::Runtime,
    logs: LogHandle,
    writer: std::thread::JoinHandle<()>,
    handle: StackHandle,
    inbox: Option<Inbox>,
    /// Injects an interrupt as a signal would (the terminal view's `q`).
    interrupt: mpsc::UnboundedSender<()>,
    signals: mpsc::UnboundedReceiver<()>,
    /// The container engine, once the run has picked it (the dashboard samples through it).
    engine: Arc<OnceLock<ContainerEngine>>,
    dashboard: Option<Dashboard>,
    view: Option<(TtyGuard, JoinHandle<()>)>,
}

impl Session {
    /// Starts the log mux, the async runtime, the signal handling and the stack's handle.
    pub(crate) fn start(log: LogSetup) -> Result<Session, Error> {
        let (logs, writer) = crate::logs::mux::spawn_with(
            log.out,
            log.format,
            crate::engine::TAIL_LINES,
            log.files,
            log.redact,
        );
        let rt = runtime()?;
        let (interrupt, signals) = interrupts(&rt);
        let (handle, inbox) = crate::engine::channel(logs.fanout());
        Ok(Session {
            rt,
            logs,
            writer,
            handle,
            inbox: Some(inbox),
            interrupt,
            signals,
            engine: Arc::default(),
            dashboard: None,
            view: None,
        })
    }

    /// The receiving end of the stack's handle, for the run's [`UpRequest`].
    pub(crate) fn take_inbox(&mut self) -> Option<Inbox> {
        self.inbox.take()
    }

    /// The log, for events of the command's own.
    pub(crate) fn logs(&self) -> &LogHandle {
        &self.logs
    }

    /// Runs `f` to completion on the session's runtime.
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A warning in the log (not about one service).
    pub(crate) fn warn(&self, text: String) {
        self.rt
            .block_on(self.logs.publish(StackEvent::warning(None, text)));
    }

    /// Serves the web dashboard on 127.0.0.1:`port` (a free one when `None`) and says where.
    pub(crate) fn serve_dashboard(
        &mut self,
        info: StackInfo,
        port: Option<u16>,
        redact: Redactor,
    ) -> std::io::Result<()> {
        let usage = usage_source(self.engine.clone());
        let started = self.rt.block_on(crate::views::web::start(
            self.handle.clone(),
            info,
            port,
            redact,
            usage,
        ))?;
        self.rt.block_on(
            self.logs
                .event("devstack", format!("dashboard: {}", started.url)),
        );
        self.dashboard = Some(started);
        Ok(())
    }

    /// Where the dashboard of this run is served (with its access token), if it is.
    pub(crate) fn dashboard_url(&self) -> Option<&str> {
        self.dashboard.as_ref().map(|d| d.url.as_str())
    }

    /// Shows the interactive terminal view of `services`, unless the terminal cannot be set up
    /// (then the plain log goes on).
    pub(crate) fn show_terminal(&mut self, services: Vec<String>, color: bool) {
        let tty = match TtyGuard::enter() {
            Ok(tty) => tty,
            Err(e) => {
                tracing::warn!("no interactive view: cannot set the terminal up: {e}");
                return;
            }
        };
        let view = self
            .rt
            .spawn(crate::views::terminal::run(crate::views::terminal::Setup {
                handle: self.handle.clone(),
                logs: self.logs.clone(),
                services,
                color,
                dashboard: self.dashboard.as_ref().map(|d| d.url.clone()),
                interrupt: self.interrupt.clone(),
            }));
        self.view = Some((tty, view));
    }

    /// Runs the engine on `req` with the control socket served beside it, on the container
    /// engine the selected services need. An error before the engine starts when that engine
    /// cannot be reached.
    pub(crate) fn run(&mut self, stack: &Stack, req: UpRequest<'_>) -> Result<UpOutcome, Error> {
        let Session {
            rt,
            logs,
            handle,
            signals,
            engine,
            ..
        } = self;
        rt.block_on(async {
            let picked = ContainerEngine::for_services(stack, &req.selected).await?;
            let picked = engine.get_or_init(|| picked);
            serve_and_run(picked, stack, handle.clone(), req, logs, signals)
                .await
                .map_err(Error::from)
        })
    }

    /// The container engine the run picked (none before [`Session::run`], nor when it could
    /// not be reached).
    pub(crate) fn engine(&self) -> Option<&ContainerEngine> {
        self.engine.get()
    }

    /// Ends the session: the view goes with the engine, then every log line is written.
    pub(crate) fn finish(self) {
        let Session {
            rt,
            logs,
            writer,
            handle,
            dashboard,
            view,
            ..
        } = self;
        // The view ends with the engine; it holds a log handle, so it goes before the writer.
        let tty = view.map(|(tty, view)| {
            let abort = view.abort_handle();
            rt.block_on(async {
                if tokio::time::timeout(Duration::from_secs(2), view)
                    .await
                    .is_err()
                {
                    tracing::warn!("the terminal view did not end with the stack");
                    abort.abort();
                }
            });
            tty
        });
        drop(handle);
        drop(logs);
        // The writer ends once every handle is gone; join so no line is lost.
        let _ = writer.join();
        drop(tty);
        drop(dashboard);
        drop(rt);
    }
}

/// The dashboard's CPU and memory, sampled as the live `ps` does, through the engine the run
/// picked (processes only until it has).
fn usage_source(engine: Arc<OnceLock<ContainerEngine>>) -> UsageSource {
    Arc::new(move |snapshot| {
        let engine = engine.get().cloned();
        Box::pin(async move {
            let sampled = crate::control::server::usage_of(engine.as_ref(), &snapshot).await;
            crate::views::web::usage(sampled)
        })
    })
}

/// Ctrl-C, SIGTERM and SIGHUP as a stream of interrupts (through `tokio::signal`, on `rt`).
/// The kernel escalates: stop, kill, leave. Should even that not end the run, the fifth exits.
/// The sender injects the same interrupt (the terminal view's `q`).
fn interrupts(
    rt: &tokio::runtime::Runtime,
) -> (mpsc::UnboundedSender<()>, mpsc::UnboundedReceiver<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = mpsc::unbounded_channel();
    let inject = tx.clone();
    rt.block_on(async {
        let kinds = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ];
        let mut streams = Vec::new();
        for k in kinds {
            match signal(k) {
                Ok(s) => streams.push(s),
                Err(e) => tracing::warn!("cannot install a signal handler: {e}"),
            }
        }
        tokio::spawn(async move {
            let mut count = 0;
            loop {
                let any = futures_util::future::select_all(
                    streams.iter_mut().map(|s| Box::pin(s.recv())),
                );
                if any.await.0.is_none() {
                    return;
                }
                count += 1;
                if count >= 5 {
                    // No destructor runs on this path: put the terminal back by hand.
                    crate::views::terminal::restore();
                    std::process::exit(crate::error::exit::INTERRUPTED);
                }
                // The receiver lives as long as the command; after that nobody needs the signal.
                let _ = tx.send(());
            }
        });
    });
    (inject, rx)
}

/// Runs the engine with the control socket served beside it for as long as it runs.
async fn serve_and_run(
    rt: &ContainerEngine,
    stack: &Stack,
    handle: StackHandle,
    req: UpRequest<'_>,
    logs: &LogHandle,
    signals: &mut mpsc::UnboundedReceiver<()>,
) -> Result<UpOutcome, crate::engine::UpError> {
    let dir = crate::project::state_dir(&stack.name);
    let socket = crate::project::socket_path(&dir);
    let server = match crate::control::server::Server::start(
        &socket,
        &stack.name,
        handle,
        rt.clone(),
        dir.join("logs"),
        logs.clone(),
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            logs.publish(StackEvent::warning(
                None,
                format!(
                    "cannot serve the control socket `{}`: {e}; `devstack restart`, `ps` and `wait` will not reach this run",
                    socket.display()
                ),
            ))
            .await;
            None
        }
    };
    let outcome = crate::engine::up(rt, req, logs.clone(), signals).await;
    if let Some(s) = server {
        s.close().await;
    }
    outcome
}
