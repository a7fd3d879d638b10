//! Probe tasks: one per service start that has `ready:`. Each runs from the host until the
//! probe passes or its timeout, then reports to the engine. Exits are not its business (the
//! unit reports them), and a `log` probe passes only when a line matched (never at end of
//! output): that is the pump's report, so here it only keeps the deadline.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{Probe, Service, ServiceKind};
use crate::kernel::Input;
use crate::plan::HostPorts;
use crate::readiness::{self, NotReady, ProbeTarget};
use crate::runtime::ContainerRuntime;

/// A process as a probe target: exec runs on the host, in its folder with its environment.
struct ProcessTarget {
    cwd: std::path::PathBuf,
    env: Vec<(String, String)>,
}

impl ProbeTarget for ProcessTarget {
    async fn exited(&self) -> Result<Option<i64>, String> {
        Ok(None)
    }

    async fn exec(&self, argv: &[String]) -> Result<(i64, String), String> {
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let out = tokio::process::Command::new(program)
            .args(args)
            .current_dir(&self.cwd)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("cannot run `{program}`: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((i64::from(out.status.code().unwrap_or(-1)), text))
    }

    async fn health(&self) -> Result<(Option<String>, bool), String> {
        Err("a native process has no container healthcheck".to_string())
    }
}

/// Starts the probe of one start of `svc`; it reports `Ready` or `ProbeFailed` on `tx`.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the values are what the event carries"
)]
pub fn spawn<R: ContainerRuntime>(
    rt: R,
    project: &str,
    svc: &Service,
    epoch: u64,
    timeout: Duration,
    container: Option<String>,
    ports: HostPorts,
    tx: mpsc::UnboundedSender<Input>,
) -> Option<tokio::task::AbortHandle> {
    let ready = svc.ready.clone()?;
    let name = svc.name.clone();
    let send = move |i: Input| {
        // The engine outlives its probes.
        let _ = tx.send(i);
    };
    if let Probe::Log(re) = &ready.probe {
        let reason = format!(
            "no line matched `{re}` within {}",
            humantime::format_duration(timeout)
        );
        let task = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            send(Input::ProbeFailed {
                service: name,
                epoch,
                reason,
            });
        });
        return Some(task.abort_handle());
    }
    let process = crate::unit::process::spawn_spec(project, svc, &ports);
    let is_process = matches!(svc.kind, ServiceKind::Process { .. });
    let task = tokio::spawn(async move {
        let never = tokio_util::sync::CancellationToken::new();
        let result = match (is_process, process, container) {
            (true, Some(spec), _) => {
                let target = ProcessTarget {
                    cwd: spec.cwd,
                    env: spec.env,
                };
                readiness::wait_ready(&target, &name, &ready, &ports, None, &never).await
            }
            (false, _, Some(id)) => {
                let target = readiness::ContainerTarget { rt: &rt, id: &id };
                readiness::wait_ready(&target, &name, &ready, &ports, None, &never).await
            }
            _ => Err(NotReady::Engine("nothing to probe".to_string())),
        };
        match result {
            Ok(_) => send(Input::Ready {
                service: name,
                epoch,
            }),
            Err(NotReady::TimedOut { after, last_error }) => send(Input::ProbeFailed {
                service: name,
                epoch,
                reason: format!(
                    "not ready after {}: {last_error}",
                    humantime::format_duration(after)
                ),
            }),
            Err(NotReady::Engine(e)) => send(Input::ProbeFailed {
                service: name,
                epoch,
                reason: e,
            }),
            // The unit reports the exit; a cancelled probe has nothing to say.
            Err(NotReady::Exited(_) | NotReady::Cancelled) => {}
        }
    });
    Some(task.abort_handle())
}
