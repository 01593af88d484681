//! Services run inside one process, as [`crate::main`] runs each alone: its
//! configuration from a given environment (never the process's, which the
//! services share), its own named NATS connection, the topology, and its
//! `run` future until stopped. For tests that need the services' behaviour
//! but not their processes (no signals, no kills, no exit codes): they
//! start in milliseconds and share one build. The services run on a runtime
//! of their own, so a test's runtime flavour does not matter.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, CommonArgs, Settings};

/// A service started, by name, and its task.
type Running = (&'static str, JoinHandle<Result<(), String>>);

/// Services started in this process; stopped when dropped.
pub struct InProcess {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: CancellationToken,
    running: Mutex<Vec<Running>>,
}

impl InProcess {
    /// A runtime of `workers` threads for the services.
    pub fn new(workers: usize) -> std::io::Result<InProcess> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("in-process-service")
            .enable_all()
            .build()?;
        Ok(InProcess {
            runtime: Some(runtime),
            shutdown: CancellationToken::new(),
            running: Mutex::new(Vec::new()),
        })
    }

    /// Starts `service` with `vars` as its environment. A bad configuration
    /// is an error now; a failure later is told by [`InProcess::failures`].
    pub fn start<C, F, Fut, E>(
        &self,
        service: &'static str,
        vars: &[(String, String)],
        run: F,
    ) -> Result<(), String>
    where
        C: Settings + Send + 'static,
        F: FnOnce(C, bus::Bus, CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.start_with(service, &CommonArgs::default(), vars, run)
    }

    /// [`InProcess::start`] with the service's flags (a `--config` file).
    pub fn start_with<C, F, Fut, E>(
        &self,
        service: &'static str,
        args: &CommonArgs,
        vars: &[(String, String)],
        run: F,
    ) -> Result<(), String>
    where
        C: Settings + Send + 'static,
        F: FnOnce(C, bus::Bus, CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let config: C = config::load_with(args, vars)
            .map_err(|e| format!("{service}: bad configuration: {e}"))?;
        let shutdown = self.shutdown.child_token();
        let Some(runtime) = &self.runtime else {
            return Err(format!("{service}: the services are stopped"));
        };
        let task = runtime.spawn(async move {
            let bus = crate::connect(config.nats_url(), service, C::MAKES_TOPOLOGY)
                .await
                .map_err(|e| format!("{service}: cannot reach NATS: {e}"))?;
            let client = bus.client().clone();
            let result = run(config, bus, shutdown)
                .await
                .map_err(|e| format!("{service} failed: {e}"));
            let _ = tokio::time::timeout(crate::DRAIN_GRACE, client.drain()).await;
            result
        });
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((service, task));
        Ok(())
    }

    /// The services that have stopped on their own, and why.
    pub fn failures(&self) -> Vec<String> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, task)| task.is_finished())
            .map(|(service, _)| format!("{service} stopped on its own"))
            .collect()
    }
}

impl InProcess {
    /// Stops every service and waits (a few seconds at most) for them to
    /// finish as they would on SIGTERM.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, task) in running {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Inside a test's runtime no thread may block: the tasks
                // are told to stop and dropped where they stand.
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(Duration::from_secs(2));
            }
        }
    }
}
