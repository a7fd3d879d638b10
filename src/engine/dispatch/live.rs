//! The engine's side of a live stack file: an apply (from the watch of the stack's own files or
//! from `devstack apply`) is loaded, made ready (see [`super::apply`]) and handed to the kernel
//! as [`Input::Desired`]; the engine then runs the new definitions (a removed service is kept
//! until the kernel has stopped it and says [`Effect::Remove`](crate::kernel::Effect)).

use super::super::apply::{self, ApplyAnswer, ApplyRequest, Ready};
use super::super::host::ProcessHost;
use super::Engine;
use crate::event::StackEvent;
use crate::kernel::Input;
use crate::redact::Redactor;
use crate::runtime::ContainerRuntime;

impl<R: ContainerRuntime, H: ProcessHost> Engine<R, H> {
    /// Answers an apply; the kernel's input when there is a plan to carry out.
    pub(super) async fn on_apply(&mut self, req: ApplyRequest) -> Option<Input> {
        let ApplyRequest { dry_run, reply } = req;
        let (answer, input) = self.plan_apply(dry_run).await;
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
        input
    }

    async fn plan_apply(&mut self, dry_run: bool) -> (ApplyAnswer, Option<Input>) {
        if !self.p.kernel.follows_config() {
            return (ApplyAnswer::Stopping, None);
        }
        let Some(reload) = &self.p.reload else {
            return (ApplyAnswer::Unsupported, None);
        };
        let loaded = match reload() {
            Ok(l) => l,
            Err(error) => {
                self.config_invalid(&error).await;
                return (ApplyAnswer::Invalid { error }, None);
            }
        };
        self.config_valid();
        for w in &loaded.warnings {
            if !self.config_warnings.contains(w) {
                let warning = StackEvent::warning(None, w.clone());
                self.p.logs.publish(warning).await;
            }
        }
        self.config_warnings = loaded.warnings.clone();
        let p = &self.p;
        let ready = match apply::ready(&p.rt, &p.stack, &p.ports, loaded, &p.logs).await {
            Ok(r) => r,
            Err((code, reason)) => {
                let text =
                    format!("config not applied: {reason}; the stack keeps running as it was");
                self.p.logs.publish(StackEvent::warning(None, text)).await;
                return (ApplyAnswer::Refused { code, reason }, None);
            }
        };
        let changes = self.p.kernel.plan(&ready.desired);
        if dry_run {
            let answer = ApplyAnswer::Applied {
                changes,
                dry_run: true,
            };
            return (answer, None);
        }
        let desired = self.adopt(ready).await;
        let answer = ApplyAnswer::Applied {
            changes,
            dry_run: false,
        };
        (answer, Some(Input::Desired(desired)))
    }

    /// Takes the new stack as the one to run from now on: its definitions, host ports and
    /// container specs (a removed service's kept until it is gone), and what to watch.
    async fn adopt(&mut self, ready: Ready) -> indexmap::IndexMap<String, crate::kernel::Spec> {
        let Ready {
            mut stack,
            selected,
            mut ports,
            specs,
            desired,
        } = ready;
        for (name, svc) in &self.p.stack.services {
            if self.p.kernel.state(name).is_some() && !desired.contains_key(name) {
                stack.services.insert(name.clone(), svc.clone());
                if let Some(p) = self.p.ports.0.get(name) {
                    ports.0.insert(name.clone(), p.clone());
                }
            }
        }
        for (name, spec) in specs {
            self.p.units.specs.insert(name, spec);
        }
        let redact = Redactor::new(stack.secret_values.iter().cloned());
        self.p.redact = redact.clone();
        self.p.units.redact = redact;
        self.p.units.ports = ports.clone();
        self.p.ports = ports;
        if let Some(path) = &self.p.recorded_ports {
            let before = crate::plan::Recorded {
                path: path.clone(),
                ports: crate::project::ports::load(path),
                ..Default::default()
            };
            super::super::prepare::record_ports(&before, &self.p.ports, &self.p.logs).await;
        }
        let watching = super::super::watch_specs(
            &stack,
            &selected,
            self.p.watch_services,
            self.p.watch_config,
        );
        self.p.stack = stack;
        self.p.tasks.forget_early();
        self.p.selected = selected;
        if watching != self.p.watching {
            match super::super::watch(&self.p.host, watching.clone(), &self.p.logs).await {
                Ok(w) => {
                    self.rewatch = Some(w);
                    self.p.watching = watching;
                }
                Err(e) => {
                    let text =
                        format!("the new watch could not start ({e:?}); the old one goes on");
                    self.p.logs.publish(StackEvent::warning(None, text)).await;
                }
            }
        }
        desired
    }

    /// The service is gone from the stack and has stopped: its unit ends, its container is
    /// removed (named volumes kept), and the engine forgets it.
    pub(super) async fn remove(&mut self, service: &str) {
        self.end_probe(service);
        if let Some((handle, task)) = self.p.units.live.remove(service) {
            drop(handle);
            let _ = task.await;
        }
        let container = self.instances.remove(service).and_then(|i| i.1);
        if let Some(id) = container {
            if let Err(e) = self.p.rt.remove(&id).await {
                let text = format!("cannot remove its container: {e}");
                let warning = StackEvent::warning(Some(service), text);
                self.p.logs.publish(warning).await;
            }
        }
        self.p.stack.services.shift_remove(service);
        self.p.ports.0.shift_remove(service);
        self.p.units.ports.0.shift_remove(service);
        self.p.units.specs.shift_remove(service);
    }

    /// The stack files are invalid: said once per distinct error, and kept for `ps` until a
    /// later edit is valid.
    async fn config_invalid(&mut self, error: &str) {
        if self.config_error.as_deref() == Some(error) {
            return;
        }
        self.config_error = Some(error.to_string());
        if let Some(tx) = &self.p.config_error {
            tx.send_replace(Some(error.to_string()));
        }
        let event = StackEvent::ConfigInvalid {
            error: error.to_string(),
        };
        self.p.logs.publish(event).await;
    }

    fn config_valid(&mut self) {
        if self.config_error.take().is_some() {
            if let Some(tx) = &self.p.config_error {
                tx.send_replace(None);
            }
        }
    }
}
