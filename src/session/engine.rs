//! The one place that picks a run's container engine: Docker when the selected services include
//! containers, none when the stack is native processes only (devstack then works without a
//! Docker engine). `doctor` connects on its own: it reports on the engine itself.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::Stack;
use crate::docker::DockerRuntime;
use crate::runtime::{
    BuildOutput, BuildRequest, ContainerInfo, ContainerRuntime, ContainerSpec, NoEngine,
    OutputStream, Published, Result, UsageSample,
};

/// The container engine a command works with, chosen by [`ContainerEngine::for_services`].
#[derive(Clone)]
pub(crate) enum ContainerEngine {
    Docker(DockerRuntime),
    /// No container service is selected: no engine is contacted.
    None(NoEngine),
}

impl ContainerEngine {
    /// Docker (connected now) when any of `services` of `stack` is a container; no engine
    /// otherwise.
    pub(crate) async fn for_services(stack: &Stack, services: &[impl AsRef<str>]) -> Result<Self> {
        let containers = services.iter().any(|s| {
            stack
                .services
                .get(s.as_ref())
                .is_some_and(|s| s.is_container())
        });
        if !containers {
            return Ok(Self::None(NoEngine));
        }
        Ok(Self::Docker(DockerRuntime::connect().await?))
    }

    /// For `down`: Docker when the stack has containers (connected now, or the error); else
    /// Docker if it answers (a file edited while the stack ran may have dropped the services
    /// whose containers and volumes are left), else no engine.
    pub(crate) async fn for_cleanup(stack: &Stack) -> Result<Self> {
        let all: Vec<String> = stack.services.keys().cloned().collect();
        match Self::for_services(stack, &all).await? {
            Self::None(n) => Ok(DockerRuntime::connect()
                .await
                .map_or(Self::None(n), Self::Docker)),
            docker => Ok(docker),
        }
    }

    /// The Docker connection, for what only Docker offers (an attached `exec`).
    pub(crate) fn docker(&self) -> Option<&DockerRuntime> {
        match self {
            Self::Docker(d) => Some(d),
            Self::None(_) => None,
        }
    }
}

/// Forwards one call to whichever engine was picked.
macro_rules! forward {
    ($self:ident, $rt:ident => $call:expr) => {
        match $self {
            Self::Docker($rt) => $call.await,
            Self::None($rt) => $call.await,
        }
    };
}

impl ContainerRuntime for ContainerEngine {
    async fn list(&self, project: &str) -> Result<Vec<ContainerInfo>> {
        forward!(self, rt => rt.list(project))
    }
    async fn list_publishing(&self) -> Result<Vec<(String, Vec<Published>)>> {
        forward!(self, rt => rt.list_publishing())
    }
    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        forward!(self, rt => rt.inspect(id))
    }
    async fn image_id(&self, image: &str) -> Result<Option<String>> {
        forward!(self, rt => rt.image_id(image))
    }
    async fn image_labels(
        &self,
        image: &str,
    ) -> Result<Option<(String, BTreeMap<String, String>)>> {
        forward!(self, rt => rt.image_labels(image))
    }
    async fn build(
        &self,
        req: BuildRequest,
        progress: tokio::sync::mpsc::UnboundedSender<BuildOutput>,
    ) -> Result<String> {
        forward!(self, rt => rt.build(req, progress))
    }
    async fn copy_into(&self, id: &str, tar: Vec<u8>) -> Result<()> {
        forward!(self, rt => rt.copy_into(id, tar))
    }
    async fn pull(
        &self,
        image: &str,
        progress: tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<()> {
        forward!(self, rt => rt.pull(image, progress))
    }
    async fn ensure_network(&self, project: &str, name: &str) -> Result<()> {
        forward!(self, rt => rt.ensure_network(project, name))
    }
    async fn ensure_volume(&self, project: &str, volume: &str, full_name: &str) -> Result<()> {
        forward!(self, rt => rt.ensure_volume(project, volume, full_name))
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        forward!(self, rt => rt.create(spec))
    }
    async fn start(&self, id: &str) -> Result<()> {
        forward!(self, rt => rt.start(id))
    }
    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        forward!(self, rt => rt.stop(id, grace))
    }
    async fn kill(&self, id: &str) -> Result<()> {
        forward!(self, rt => rt.kill(id))
    }
    async fn remove(&self, id: &str) -> Result<()> {
        forward!(self, rt => rt.remove(id))
    }
    async fn exec(&self, id: &str, argv: &[String]) -> Result<(i64, String)> {
        forward!(self, rt => rt.exec(id, argv))
    }
    async fn exec_hook(&self, id: &str, hook: &crate::runtime::HookExec) -> Result<(i64, String)> {
        forward!(self, rt => rt.exec_hook(id, hook))
    }
    async fn run_init(&self, spec: &crate::runtime::InitSpec) -> Result<(i64, String)> {
        forward!(self, rt => rt.run_init(spec))
    }
    fn logs(&self, id: &str, since: i64, after_ns: Option<i128>, tty: bool) -> OutputStream {
        match self {
            Self::Docker(rt) => rt.logs(id, since, after_ns, tty),
            Self::None(rt) => rt.logs(id, since, after_ns, tty),
        }
    }
    async fn remove_network(&self, name: &str) -> Result<()> {
        forward!(self, rt => rt.remove_network(name))
    }
    async fn list_volumes(&self, project: &str) -> Result<Vec<(String, String)>> {
        forward!(self, rt => rt.list_volumes(project))
    }
    async fn remove_volume(&self, name: &str) -> Result<()> {
        forward!(self, rt => rt.remove_volume(name))
    }
    async fn volume_id(&self, name: &str) -> Result<Option<String>> {
        forward!(self, rt => rt.volume_id(name))
    }
    async fn usage(&self, id: &str) -> Result<UsageSample> {
        forward!(self, rt => rt.usage(id))
    }
}
