//! The stack file is live: a change of the stack's own files (or `devstack apply`) is loaded
//! and validated as at start, made ready to run (host ports, images, network and volumes,
//! container specs), and handed to the kernel as the new desired stack, which plans and carries
//! out only what changed. Anything wrong refuses the whole change: the running stack stays as
//! it was.

use std::collections::HashSet;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::config::{Service, ServiceKind, Stack};
use crate::event::ConfigChange;
use crate::kernel::Spec;
use crate::logs::LogHandle;
use crate::plan::HostPorts;
use crate::runtime::{labels, ContainerRuntime, ContainerSpec, Published};

/// The name the stack's own files are watched under, beside the services' watches (a service
/// name cannot hold `:`).
pub(crate) const CONFIG_WATCH: &str = "devstack:config";

/// The stack files as they are now, loaded and validated as at start, with the services to run
/// (as `up` chose them: those named and their dependencies, or all).
pub(crate) struct Reloaded {
    pub stack: Stack,
    pub selected: Vec<String>,
    pub warnings: Vec<String>,
}

/// Loads the stack files again; the error is what `validate` prints.
pub(crate) type Reload = Box<dyn Fn() -> Result<Reloaded, String> + Send + Sync>;

/// A request to apply the stack files as they are now.
pub(crate) struct ApplyRequest {
    pub dry_run: bool,
    pub reply: Option<oneshot::Sender<ApplyAnswer>>,
}

/// What became of an apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ApplyAnswer {
    /// The plan, carried out (or, `dry_run`, only made).
    Applied {
        changes: Vec<ConfigChange>,
        #[serde(default)]
        dry_run: bool,
    },
    /// The files are invalid: nothing changed.
    Invalid { error: String },
    /// Valid, but it cannot run as written (a port held, an image missing): nothing changed.
    /// `code` is devstack's exit code for it (4 a port, 6 an image, 1 otherwise).
    Refused { code: i32, reason: String },
    /// The stack is stopping: nothing is applied any more.
    Stopping,
    /// This run does not follow its stack files (no way to load them again).
    Unsupported,
}

/// A new stack made ready to hand to the kernel.
pub(super) struct Ready {
    pub stack: Stack,
    pub selected: Vec<String>,
    pub ports: HostPorts,
    pub specs: IndexMap<String, ContainerSpec>,
    pub desired: IndexMap<String, Spec>,
}

/// The files the stack was read from, to watch: every stack file, `extends` and `include`
/// file, `.env`, `--env-file` and `env_file` (each only when it exists: a file that does not
/// exist yet is not watched).
pub(crate) fn inputs(stack: &Stack) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for f in stack.files.iter().chain(&stack.inputs) {
        if f.is_file() && !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

/// Why a valid change cannot run: devstack's exit code for it, and what to say.
pub(super) type Refusal = (i32, String);

/// Makes `new` ready to run beside the current run: refused as a whole when the project name
/// changed, a new host port is held, or an image is neither there nor pullable.
pub(super) async fn ready<R: ContainerRuntime>(
    rt: &R,
    current: &Stack,
    current_ports: &HostPorts,
    new: Reloaded,
    logs: &LogHandle,
) -> Result<Ready, Refusal> {
    use crate::error::exit;
    let Reloaded {
        stack, selected, ..
    } = new;
    if stack.name != current.name {
        let reason = format!(
            "the project name changed from `{}` to `{}`: stop the stack and `devstack up` again",
            current.name, stack.name
        );
        return Err((exit::CONFIG, reason));
    }
    let ports = reassign_ports(current, current_ports, &stack, &selected)
        .map_err(|m| (exit::PORT_CONFLICT, m))?;
    let image_ids = images(rt, &stack, &selected, logs)
        .await
        .map_err(|m| (exit::IMAGE_UNAVAILABLE, m))?;
    super::prepare::create_network_and_volumes(rt, &stack, &selected)
        .await
        .map_err(|e| (exit::FAILURE, e.to_string()))?;
    let mut specs = IndexMap::new();
    let mut desired = IndexMap::new();
    for name in &selected {
        let svc = &stack.services[name];
        let spec = match &svc.kind {
            ServiceKind::Container { image, .. } => image_ids
                .get(image)
                .and_then(|id| crate::plan::container_spec(&stack.name, svc, &ports, id)),
            ServiceKind::Process { .. } => None,
        };
        let identity = spec
            .as_ref()
            .and_then(|s| s.labels.get(labels::CONFIG_HASH).cloned());
        if let Some(spec) = spec {
            specs.insert(name.clone(), spec);
        }
        desired.insert(name.clone(), Spec::of(svc, &selected, &ports, identity));
    }
    Ok(Ready {
        stack,
        selected,
        ports,
        specs,
        desired,
    })
}

/// Every service keeps the host ports it has when its `ports:` did not change; a new or
/// changed one gets its written port (which must be free) or a free one.
fn reassign_ports(
    current: &Stack,
    current_ports: &HostPorts,
    new: &Stack,
    selected: &[String],
) -> Result<HostPorts, String> {
    let mut taken: HashSet<u16> = current_ports.all().map(|(_, p)| p.host_port).collect();
    let mut out = IndexMap::new();
    for (name, svc) in &new.services {
        let same = current
            .services
            .get(name)
            .is_some_and(|old| old.ports == svc.ports);
        if let (true, Some(kept)) = (same, current_ports.0.get(name)) {
            out.insert(name.clone(), kept.clone());
            continue;
        }
        let mut published = Vec::new();
        for p in &svc.ports {
            let host_port = match p.host_port {
                Some(h) => h,
                None => crate::ports::pick_free(p.host_ip, &taken)
                    .map_err(|e| format!("cannot find a free port for `{name}`: {e}"))?,
            };
            let ours = current_ports.all().any(|(_, e)| e.host_port == host_port);
            let free =
                crate::ports::is_free(crate::ports::check_addr(p.host_ip), host_port, p.protocol);
            if selected.contains(name) && !ours && !free {
                let holder = crate::ports::holder(host_port, p.protocol)
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "a process devstack cannot see".to_string());
                return Err(format!(
                    "port {}:{host_port} of `{name}` is taken by {holder}: free it or change the port",
                    p.host_ip
                ));
            }
            taken.insert(host_port);
            published.push(Published {
                host_ip: p.host_ip,
                host_port,
                container_port: p.container_port,
                protocol: p.protocol,
            });
        }
        out.insert(name.clone(), published);
    }
    Ok(HostPorts(out))
}

/// The image id of every container to run: present, or pulled; an image devstack builds must
/// be there already (`devstack build`), as `docker compose up` without `--build`.
async fn images<R: ContainerRuntime>(
    rt: &R,
    stack: &Stack,
    selected: &[String],
    logs: &LogHandle,
) -> Result<std::collections::HashMap<String, String>, String> {
    let mut missing_builds = Vec::new();
    for name in selected {
        let svc: &Service = &stack.services[name];
        let ServiceKind::Container { image, .. } = &svc.kind else {
            continue;
        };
        if svc.options.build.is_some() && rt.image_id(image).await.ok().flatten().is_none() {
            missing_builds.push(format!("`{name}` (`{image}`)"));
        }
    }
    if !missing_builds.is_empty() {
        return Err(format!(
            "the image of {} is not built: run `devstack build`, then apply again",
            missing_builds.join(", ")
        ));
    }
    super::prepare::ensure_pulled(rt, stack, selected, &HashSet::new(), logs)
        .await
        .map_err(up_error_text)
}

fn up_error_text(e: super::UpError) -> String {
    match e {
        super::UpError::Runtime(r) => r.to_string(),
        other => format!("{other:?}"),
    }
}
