//! pi-spawner: one per Pi. Registers the Pi in the presence bucket with a
//! heartbeat, spawns one `pi-client` per session in its own process group,
//! and stops it (SIGTERM, grace, SIGKILL of the whole group, mpv included).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bus::service::{self as svc, Reject};
use bus::{Bus, names, subjects};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::{PiPresence, SpawnReply, SpawnRequest, StopClientReply, StopClientRequest};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// This Pi's id (`CINEMA_PI_ID`): one subject token.
    pub pi_id: String,
    pub name: String,
    /// The pi-client binary; empty means `pi-client` beside this binary.
    pub client_bin: PathBuf,
    /// NATS URL handed to clients; empty means this spawner's own.
    pub client_nats_url: String,
    /// Extra environment for every client (e.g. `CINEMA_PI_CLIENT_VO`).
    pub client_env: HashMap<String, String>,
    pub max_sessions: u32,
    pub stop_grace_ms: u64,
    pub heartbeat_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            pi_id: "local-pi".into(),
            name: "Simulated Pi".into(),
            client_bin: PathBuf::new(),
            client_nats_url: String::new(),
            client_env: HashMap::new(),
            max_sessions: 1,
            stop_grace_ms: 3000,
            heartbeat_s: 5,
        }
    }
}

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_PI_SPAWNER_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = &[("CINEMA_PI_ID", "pi_id")];
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
    fn validate(&self) -> Result<(), String> {
        bus::subjects::check_id("pi_id", &self.pi_id).map_err(|e| e.to_string())?;
        if self.max_sessions == 0 {
            return Err("max_sessions must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
}

struct Client {
    child: Child,
    pid: u32,
}

struct Spawner {
    config: Config,
    client_bin: PathBuf,
    clients: Mutex<HashMap<String, Client>>,
    bus: Bus,
}

pub async fn run(config: Config, bus: Bus, shutdown: CancellationToken) -> Result<(), Error> {
    let client_bin = if config.client_bin.as_os_str().is_empty() {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("pi-client")))
            .unwrap_or_else(|| PathBuf::from("pi-client"))
    } else {
        config.client_bin.clone()
    };
    let spawner = Arc::new(Spawner {
        config,
        client_bin,
        clients: Mutex::new(HashMap::new()),
        bus: bus.clone(),
    });
    let pi = spawner.config.pi_id.clone();
    let service = svc::start(
        bus.client(),
        names::service::PI_SPAWNER,
        "Spawns a client per session on a Pi",
    )
    .await?;
    let spawn = svc::endpoint(&service, "spawn", &subjects::pi_spawn(&pi)).await?;
    let stop = svc::endpoint(&service, "stop", &subjects::pi_stop(&pi)).await?;
    tracing::info!(pi = %pi, client = %spawner.client_bin.display(), "The Pi is registered.");
    tokio::join!(
        svc::serve(spawn, shutdown.clone(), 4, |req: SpawnRequest| {
            let s = spawner.clone();
            async move { s.spawn(req).await }
        }),
        svc::serve(stop, shutdown.clone(), 4, |req: StopClientRequest| {
            let s = spawner.clone();
            async move { s.stop(&req.session_id).await }
        }),
        spawner.clone().heartbeat(shutdown.clone()),
        spawner.clone().reap(shutdown.clone()),
    );
    // Stop every client before exiting.
    let sessions: Vec<String> = spawner.clients.lock().await.keys().cloned().collect();
    for sid in sessions {
        let _ = spawner.stop(&sid).await;
    }
    // Bounded: NATS may already be gone.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        if let Ok(kv) = bus.kv(names::PIS_BUCKET).await {
            let _ = kv.delete(&pi).await;
        }
        let _ = service.stop().await;
    })
    .await;
    Ok(())
}

impl Spawner {
    async fn spawn(&self, req: SpawnRequest) -> Result<SpawnReply, Reject> {
        bus::subjects::check_id("session id", &req.session_id)?;
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&req.session_id) {
            return Ok(SpawnReply {
                pi_id: self.config.pi_id.clone(),
                pid: c.pid,
            });
        }
        if clients.len() as u32 >= self.config.max_sessions {
            return Err(Reject::limit(format!(
                "Pi {} already runs {} session(s), its limit",
                self.config.pi_id,
                clients.len()
            )));
        }
        let nats_url = if self.config.client_nats_url.is_empty() {
            self.config.nats_url.clone()
        } else {
            self.config.client_nats_url.clone()
        };
        let mut cmd = Command::new(&self.client_bin);
        cmd.envs(&self.config.client_env)
            .env("NATS_URL", &nats_url)
            .env("CINEMA_SESSION_ID", &req.session_id)
            .env("CINEMA_SESSION_TOKEN", &req.token)
            .env("CINEMA_PI_ID", &self.config.pi_id)
            // The first generation's names, for tools that still read them.
            .env("DAILY_ROOM_URL", &req.room_url)
            .env("DAILY_TOKEN", &req.token)
            .process_group(0)
            .stdin(std::process::Stdio::null());
        let child = cmd.spawn().map_err(|e| {
            Reject::internal(format!("cannot start {}: {e}", self.client_bin.display()))
        })?;
        let pid = child.id().unwrap_or_default();
        tracing::info!(session = %req.session_id, pid, "Started a client.");
        clients.insert(req.session_id.clone(), Client { child, pid });
        drop(clients);
        self.publish_presence().await;
        Ok(SpawnReply {
            pi_id: self.config.pi_id.clone(),
            pid,
        })
    }

    /// SIGTERM to the client's group, then SIGKILL after the grace period.
    async fn stop(&self, sid: &str) -> Result<StopClientReply, Reject> {
        let Some(mut client) = self.clients.lock().await.remove(sid) else {
            return Ok(StopClientReply {
                was_running: false,
                exit_code: 0,
            });
        };
        let group = Pid::from_raw(client.pid as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let grace = Duration::from_millis(self.config.stop_grace_ms);
        let status = match tokio::time::timeout(grace, client.child.wait()).await {
            Ok(s) => s.ok(),
            Err(_) => {
                tracing::warn!(session = %sid, pid = client.pid, "The client ignored SIGTERM; killing its group.");
                None
            }
        };
        // Whatever is left of the group (mpv included) goes now.
        let _ = killpg(group, Signal::SIGKILL);
        let status = match status {
            Some(s) => Some(s),
            None => client.child.wait().await.ok(),
        };
        tracing::info!(session = %sid, pid = client.pid, ?status, "Stopped a client.");
        self.publish_presence().await;
        Ok(StopClientReply {
            was_running: true,
            exit_code: status.and_then(|s| s.code()).unwrap_or(-1),
        })
    }

    async fn publish_presence(&self) {
        let sessions = self.clients.lock().await.keys().cloned().collect();
        let presence = PiPresence {
            pi_id: self.config.pi_id.clone(),
            name: self.config.name.clone(),
            host: std::fs::read_to_string("/etc/hostname")
                .unwrap_or_default()
                .trim()
                .to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            audio_devices: Vec::new(),
            sessions,
            heartbeat_ms: now_ms(),
            max_sessions: self.config.max_sessions,
        };
        match self.bus.kv(names::PIS_BUCKET).await {
            Ok(kv) => {
                if let Err(e) = bus::kv_put(&kv, &self.config.pi_id, &presence).await {
                    tracing::warn!(error = %e, "Cannot publish presence.");
                }
            }
            Err(e) => tracing::warn!(error = %e, "Cannot open the presence bucket."),
        }
    }

    async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.config.heartbeat_s.max(1)));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => self.publish_presence().await,
            }
        }
    }

    /// Notices clients that exited on their own and forgets them.
    async fn reap(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut exited = Vec::new();
            {
                let mut clients = self.clients.lock().await;
                for (sid, c) in clients.iter_mut() {
                    if let Ok(Some(status)) = c.child.try_wait() {
                        exited.push((sid.clone(), c.pid, status));
                    }
                }
                for (sid, pid, _) in &exited {
                    clients.remove(sid);
                    // Take mpv down with its client.
                    let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
                }
            }
            for (sid, pid, status) in exited {
                tracing::warn!(session = %sid, pid, %status, "A client exited on its own.");
                self.publish_presence().await;
            }
        }
    }
}
