//! pi-spawner: one per Pi. Registers the Pi in the presence bucket with a
//! heartbeat and spawns one `pi-client` per session, each in its own process
//! group. A supervising task per session restarts a client that exits or
//! does not join in time (exponential backoff, bounded), then fails the
//! session with the reason and the client's stderr tail. Stopping a client
//! is SIGTERM, grace, SIGKILL of the whole group (mpv included). Pid files
//! under the state dir let a restarted spawner end clients a crashed one
//! left behind.

mod pidfile;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bus::endpoints;
use bus::service::{self as svc, Reject};
use bus::subjects::{self, SessionEvent};
use bus::{Bus, names};
use futures::StreamExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, oneshot};
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::{
    AudioDevices, AudioDevicesRequest, ClientIssue, ClientIssueKind, ClientJoined,
    FailSessionRequest, PiPresence, SessionReply, SetAudioInput, SpawnReply, SpawnRequest,
    StopClientReply, StopClientRequest,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// This Pi's id (`CINEMA_PI_ID`): one subject token.
    #[serde(deserialize_with = "plumbing::config::lenient_string")]
    pub pi_id: String,
    pub name: String,
    /// The pi-client binary; empty means `pi-client` beside this binary.
    pub client_bin: PathBuf,
    /// NATS URL handed to clients; empty means this spawner's own.
    pub client_nats_url: String,
    /// Extra environment for every client (e.g. `CINEMA_PI_CLIENT_VO`).
    pub client_env: HashMap<String, String>,
    /// `BACKEND_URL` and `VIDEO_SERVICE_URL` handed to clients, as the first
    /// generation's clients expected.
    pub backend_url: String,
    pub video_service_url: String,
    /// Sessions this Pi runs at once (one TV: 1).
    pub max_sessions: u32,
    pub stop_grace_ms: u64,
    pub heartbeat_s: u64,
    /// A client that has not joined after this long is restarted.
    pub join_timeout_s: u64,
    /// Restarts of one session's client before the session fails.
    pub max_restarts: u32,
    /// First restart delay; doubles up to 10 s.
    pub restart_backoff_ms: u64,
    /// Where pid files of running clients are kept; empty means
    /// `$XDG_STATE_HOME/cinema` (or `~/.local/state/cinema`).
    pub state_dir: PathBuf,
    /// What this Pi's clients hear (`CINEMA_PI_AUDIO_INPUT`); a choice made
    /// over the bus (`cinema.pi.{pi}.audio_input`) is stored in the state
    /// dir and wins over it.
    pub audio_input: String,
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
            backend_url: "http://127.0.0.1:8765".into(),
            video_service_url: String::new(),
            max_sessions: 1,
            stop_grace_ms: 3000,
            heartbeat_s: 5,
            join_timeout_s: 15,
            max_restarts: 3,
            restart_backoff_ms: 500,
            state_dir: PathBuf::new(),
            audio_input: String::new(),
        }
    }
}

impl plumbing::Settings for Config {
    const MAKES_TOPOLOGY: bool = false;
    const ENV_PREFIX: &'static str = "CINEMA_PI_SPAWNER_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = &[
        ("CINEMA_PI_ID", "pi_id"),
        ("CINEMA_PI_AUDIO_INPUT", "audio_input"),
    ];
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
    fn validate(&self) -> Result<(), String> {
        subjects::check_pi_id("pi_id", &self.pi_id).map_err(|e| e.to_string())?;
        if self.max_sessions == 0 {
            return Err("max_sessions must be at least 1".into());
        }
        if self.join_timeout_s == 0 {
            return Err("join_timeout_s must be at least 1".into());
        }
        check_audio_input(&self.audio_input)?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
}

/// How many stderr lines of a client are kept for the dashboard.
const STDERR_LINES: usize = 40;

/// A session's client as the spawner tracks it.
struct Handle {
    pid: Arc<std::sync::atomic::AtomicU32>,
    stop: CancellationToken,
    /// Resolves with the exit code once the client is stopped for good.
    done: Option<oneshot::Receiver<i32>>,
}

struct Spawner {
    config: Config,
    client_bin: PathBuf,
    state_dir: PathBuf,
    clients: Mutex<HashMap<String, Handle>>,
    bus: Bus,
    /// The presence bucket, opened once.
    presence: bus::async_nats::jetstream::kv::Store,
    /// What the clients hear (see `Config::audio_input`).
    audio_input: std::sync::Mutex<String>,
    /// Capture devices, listed at start and on request.
    devices: std::sync::Mutex<Vec<String>>,
}

/// The forms `pi-client` accepts; it reports anything wrong with the device
/// itself (missing, unplugged) as a client issue.
fn check_audio_input(input: &str) -> Result<(), String> {
    let kind = input.split_once(':').map_or(input, |(k, _)| k);
    match kind {
        "" | "none" | "stdin" | "alsa" => Ok(()),
        "wav" | "wav-loop" if input.len() > kind.len() + 1 => Ok(()),
        _ => Err(format!(
            "audio input {input:?}: use none, wav:PATH, wav-loop:PATH, stdin or alsa:DEVICE"
        )),
    }
}

/// "id (description)" of every capture device cpal sees (ALSA on a Pi).
fn list_devices() -> Result<Vec<String>, String> {
    use cpal::traits::{DeviceTrait, HostTrait};
    let devices = cpal::default_host()
        .input_devices()
        .map_err(|e| format!("cannot list audio inputs: {e}"))?;
    Ok(devices
        .map(|d| {
            let id = d.id().map(|i| i.id().to_string()).unwrap_or_default();
            match d.description() {
                Ok(desc) if desc.name() != id => format!("{id} ({})", desc.name()),
                _ => id,
            }
        })
        .collect())
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
    let state_dir = pidfile::state_dir(&config.state_dir, &config.pi_id);
    let stored = std::fs::read_to_string(state_dir.join("audio-input"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| check_audio_input(s).is_ok());
    let audio_input = stored.unwrap_or_else(|| config.audio_input.clone());
    let devices = tokio::task::spawn_blocking(list_devices)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let spawner = Arc::new(Spawner {
        audio_input: std::sync::Mutex::new(audio_input),
        devices: std::sync::Mutex::new(devices),
        config,
        client_bin,
        state_dir,
        clients: Mutex::new(HashMap::new()),
        presence: bus
            .kv_when_ready(names::PIS_BUCKET, Duration::from_secs(60))
            .await?,
        bus: bus.clone(),
    });
    spawner.end_orphans().await;
    let pi = spawner.config.pi_id.clone();
    let service = svc::start(
        bus.client(),
        names::service::PI_SPAWNER,
        "Spawns a client per session on a Pi",
    )
    .await?;
    let spawn = svc::endpoint(&service, &endpoints::pi_spawn(&pi)).await?;
    let stop = svc::endpoint(&service, &endpoints::pi_stop(&pi)).await?;
    let devices = svc::endpoint(&service, &endpoints::pi_devices(&pi)).await?;
    let set_input = svc::endpoint(&service, &endpoints::pi_audio_input(&pi)).await?;
    tracing::info!(pi = %pi, client = %spawner.client_bin.display(), state = %spawner.state_dir.display(), "The Pi is registered.");
    tokio::join!(
        svc::serve(spawn, shutdown.clone(), 4, |req: SpawnRequest| {
            let s = spawner.clone();
            async move { s.spawn(req).await }
        }),
        svc::serve(stop, shutdown.clone(), 4, |req: StopClientRequest| {
            let s = spawner.clone();
            async move { Ok(s.stop(&req.session_id).await) }
        }),
        svc::serve(devices, shutdown.clone(), 1, |_: AudioDevicesRequest| {
            let s = spawner.clone();
            async move { Ok(s.devices().await) }
        }),
        svc::serve(set_input, shutdown.clone(), 1, |req: SetAudioInput| {
            let s = spawner.clone();
            async move { s.set_audio_input(req).await }
        }),
        spawner.clone().heartbeat(shutdown.clone()),
    );
    // Stop every client before exiting.
    let sessions: Vec<String> = spawner.clients.lock().await.keys().cloned().collect();
    for sid in sessions {
        spawner.stop(&sid).await;
    }
    // Bounded: NATS may already be gone.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = spawner.presence.delete(&pi).await;
        let _ = service.stop().await;
    })
    .await;
    Ok(())
}

/// SIGTERM to the group, `grace`, then SIGKILL of whatever is left of it.
async fn terminate(child: &mut Child, pid: u32, grace: Duration) -> i32 {
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(s) => s.ok(),
        Err(_) => {
            tracing::warn!(pid, "A client ignored SIGTERM; killing its group.");
            None
        }
    };
    let _ = killpg(group, Signal::SIGKILL);
    let status = match status {
        Some(s) => Some(s),
        None => child.wait().await.ok(),
    };
    status.and_then(|s| s.code()).unwrap_or(-1)
}

enum Outcome {
    Stopped(i32),
    Exited(String),
    JoinTimeout,
}

impl Spawner {
    async fn spawn(self: &Arc<Self>, req: SpawnRequest) -> Result<SpawnReply, Reject> {
        subjects::check_id("session id", &req.session_id)?;
        let mut clients = self.clients.lock().await;
        if let Some(h) = clients.get(&req.session_id) {
            let pid = h.pid.load(std::sync::atomic::Ordering::Relaxed);
            return Ok(SpawnReply {
                pi_id: self.config.pi_id.clone(),
                pid,
            });
        }
        if clients.len() as u32 >= self.config.max_sessions {
            return Err(Reject::limit(format!(
                "Pi {} already runs {} session(s), its limit",
                self.config.pi_id,
                clients.len()
            )));
        }
        let (first_tx, first_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let handle = Handle {
            pid: Arc::default(),
            stop: CancellationToken::new(),
            done: Some(done_rx),
        };
        let (pid, stop) = (handle.pid.clone(), handle.stop.clone());
        clients.insert(req.session_id.clone(), handle);
        drop(clients);
        let me = self.clone();
        let sid = req.session_id.clone();
        tokio::spawn(async move {
            let code = me.supervise(req, pid, stop, first_tx).await;
            let _ = done_tx.send(code);
            me.clients.lock().await.remove(&sid);
            me.publish_presence().await;
        });
        match first_rx.await {
            Ok(Ok(pid)) => {
                self.publish_presence().await;
                Ok(SpawnReply {
                    pi_id: self.config.pi_id.clone(),
                    pid,
                })
            }
            Ok(Err(e)) => Err(Reject::internal(e)),
            Err(_) => Err(Reject::internal("the client's supervisor stopped")),
        }
    }

    fn command(&self, req: &SpawnRequest) -> Command {
        let nats_url = if self.config.client_nats_url.is_empty() {
            &self.config.nats_url
        } else {
            &self.config.client_nats_url
        };
        let mut cmd = Command::new(&self.client_bin);
        cmd.envs(&self.config.client_env)
            .env("NATS_URL", nats_url)
            .env("CINEMA_SESSION_ID", &req.session_id)
            .env("CINEMA_SESSION_TOKEN", &req.token)
            .env("CINEMA_PI_ID", &self.config.pi_id)
            // The first generation's names, for tools that still read them.
            .env("DAILY_ROOM_URL", &req.room_url)
            .env(
                "DAILY_TOKEN",
                if req.room_token.is_empty() {
                    &req.token
                } else {
                    &req.room_token
                },
            )
            .env("BACKEND_URL", &self.config.backend_url)
            .env("VIDEO_SERVICE_URL", &self.config.video_service_url)
            .process_group(0)
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let input = self.audio_input();
        if !input.is_empty() {
            cmd.env("CINEMA_PI_AUDIO_INPUT", input);
        }
        cmd
    }

    fn audio_input(&self) -> String {
        self.audio_input
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn devices(&self) -> AudioDevices {
        let listed = tokio::task::spawn_blocking(list_devices)
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let error = match listed {
            Ok(devices) => {
                *self.devices.lock().unwrap_or_else(|p| p.into_inner()) = devices;
                String::new()
            }
            Err(e) => e,
        };
        AudioDevices {
            pi_id: self.config.pi_id.clone(),
            devices: self
                .devices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            audio_input: self.audio_input(),
            error,
        }
    }

    /// Stores the Pi's audio input and tells running clients to switch.
    async fn set_audio_input(&self, req: SetAudioInput) -> Result<AudioDevices, Reject> {
        let input = req.audio_input.trim().to_string();
        check_audio_input(&input).map_err(Reject::bad_request)?;
        let path = self.state_dir.join("audio-input");
        let written = std::fs::create_dir_all(&self.state_dir)
            .and_then(|()| std::fs::write(&path, format!("{input}\n")));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "Cannot store the audio input; it holds until restart.");
        }
        *self.audio_input.lock().unwrap_or_else(|p| p.into_inner()) = input.clone();
        let changed = SetAudioInput {
            audio_input: input.clone(),
        };
        if let Err(e) = self
            .bus
            .publish(
                subjects::pi_audio_input_changed(&self.config.pi_id),
                &changed,
            )
            .await
        {
            tracing::warn!(error = %e, "Cannot tell the clients about the new audio input.");
        }
        tracing::info!(input = %input, "The audio input changed.");
        self.publish_presence().await;
        Ok(self.devices().await)
    }

    /// Runs one session's client until it is stopped or restarts run out.
    /// Returns the last exit code.
    async fn supervise(
        &self,
        req: SpawnRequest,
        pid_slot: Arc<std::sync::atomic::AtomicU32>,
        stop: CancellationToken,
        first: oneshot::Sender<Result<u32, String>>,
    ) -> i32 {
        let sid = req.session_id.clone();
        let mut first = Some(first);
        let mut restarts = 0u32;
        let mut backoff = Duration::from_millis(self.config.restart_backoff_ms.max(1));
        let grace = Duration::from_millis(self.config.stop_grace_ms);
        let tail: Arc<std::sync::Mutex<VecDeque<String>>> = Arc::default();
        let mut joins = match self
            .bus
            .client()
            .subscribe(subjects::pi_session(
                &self.config.pi_id,
                &sid,
                SessionEvent::Joined,
            ))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                if let Some(f) = first.take() {
                    let _ = f.send(Err(format!("cannot watch joins: {e}")));
                }
                return -1;
            }
        };
        loop {
            let mut child = match self.command(&req).spawn() {
                Ok(c) => c,
                Err(e) => {
                    let msg = format!("cannot start {}: {e}", self.client_bin.display());
                    if let Some(f) = first.take() {
                        let _ = f.send(Err(msg));
                        return -1;
                    }
                    self.give_up(&sid, &msg, &tail, restarts).await;
                    return -1;
                }
            };
            let pid = child.id().unwrap_or_default();
            pid_slot.store(pid, std::sync::atomic::Ordering::Relaxed);
            pidfile::write(&self.state_dir, &sid, pid);
            if let Some(err) = child.stderr.take() {
                let tail = tail.clone();
                let sid = sid.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(err).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        eprintln!("[pi-client {sid}] {line}");
                        if let Ok(mut t) = tail.lock() {
                            if t.len() == STDERR_LINES {
                                t.pop_front();
                            }
                            t.push_back(line);
                        }
                    }
                });
            }
            tracing::info!(session = %sid, pid, restarts, "Started a client.");
            if let Some(f) = first.take() {
                let _ = f.send(Ok(pid));
            }
            let outcome = self.watch(&mut child, pid, &stop, &mut joins).await;
            let outcome = match outcome {
                Outcome::Stopped(_) | Outcome::JoinTimeout => {
                    let code = terminate(&mut child, pid, grace).await;
                    match outcome {
                        Outcome::Stopped(_) => Outcome::Stopped(code),
                        other => other,
                    }
                }
                exited => {
                    // Take mpv down with its client.
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    exited
                }
            };
            pidfile::remove(&self.state_dir, &sid);
            let (kind, detail) = match outcome {
                Outcome::Stopped(code) => {
                    tracing::info!(session = %sid, pid, code, "Stopped a client.");
                    return code;
                }
                Outcome::Exited(status) => (
                    ClientIssueKind::Exited,
                    format!("the client exited on its own ({status})"),
                ),
                Outcome::JoinTimeout => (
                    ClientIssueKind::JoinTimeout,
                    format!(
                        "the client did not join within {} s",
                        self.config.join_timeout_s
                    ),
                ),
            };
            restarts += 1;
            if restarts > self.config.max_restarts {
                self.give_up(&sid, &detail, &tail, restarts - 1).await;
                return -1;
            }
            tracing::warn!(session = %sid, pid, %detail, restart_in = ?backoff, "Restarting a client.");
            self.issue(&sid, kind, &detail, &tail, restarts, backoff)
                .await;
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return 0,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Waits for the client to exit, to be stopped, or to miss its join.
    async fn watch(
        &self,
        child: &mut Child,
        pid: u32,
        stop: &CancellationToken,
        joins: &mut bus::async_nats::Subscriber,
    ) -> Outcome {
        let deadline = tokio::time::sleep(Duration::from_secs(self.config.join_timeout_s));
        tokio::pin!(deadline);
        let mut joined = false;
        loop {
            tokio::select! {
                status = child.wait() => {
                    return Outcome::Exited(status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()));
                }
                () = stop.cancelled() => return Outcome::Stopped(0),
                () = &mut deadline, if !joined => return Outcome::JoinTimeout,
                m = joins.next() => {
                    if let Some(m) = m
                        && let Ok(j) = bus::decode_message::<ClientJoined>(&m)
                        && j.pid == pid
                    {
                        joined = true;
                    }
                }
            }
        }
    }

    async fn issue(
        &self,
        sid: &str,
        kind: ClientIssueKind,
        detail: &str,
        tail: &std::sync::Mutex<VecDeque<String>>,
        restarts: u32,
        restart_in: Duration,
    ) {
        let ev = ClientIssue {
            session_id: sid.to_string(),
            pi_id: self.config.pi_id.clone(),
            kind: kind as i32,
            detail: detail.to_string(),
            stderr_tail: tail
                .lock()
                .map(|t| t.iter().cloned().collect())
                .unwrap_or_default(),
            restarts,
            restart_in_ms: restart_in.as_millis() as u32,
            at_ms: now_ms(),
        };
        let id = bus::ids::client_issue(sid, restarts, kind);
        if let Err(e) = self
            .bus
            .publish_durable(
                subjects::pi_session(&self.config.pi_id, sid, SessionEvent::Client),
                &ev,
                &id,
            )
            .await
        {
            tracing::warn!(session = %sid, error = %e, "Cannot report a client issue.");
        }
    }

    /// Restarts are used up: report, and fail the session with the reason.
    async fn give_up(
        &self,
        sid: &str,
        detail: &str,
        tail: &std::sync::Mutex<VecDeque<String>>,
        restarts: u32,
    ) {
        let reason = format!("{detail}; gave up after {restarts} restart(s)");
        tracing::error!(session = %sid, %reason, "A client keeps failing; the session failed.");
        self.issue(
            sid,
            ClientIssueKind::GaveUp,
            &reason,
            tail,
            restarts,
            Duration::ZERO,
        )
        .await;
        let fail = FailSessionRequest {
            session_id: sid.to_string(),
            reason,
        };
        if let Err(e) = self
            .bus
            .request::<_, SessionReply>(&endpoints::rooms::FAIL, &fail)
            .await
        {
            tracing::warn!(session = %sid, error = %e, "Cannot mark the session failed.");
        }
    }

    async fn stop(&self, sid: &str) -> StopClientReply {
        let handle = {
            let mut clients = self.clients.lock().await;
            clients
                .get_mut(sid)
                .map(|h| (h.stop.clone(), h.done.take()))
        };
        let Some((stop, done)) = handle else {
            return StopClientReply {
                was_running: false,
                exit_code: 0,
            };
        };
        stop.cancel();
        let code = match done {
            Some(rx) => rx.await.unwrap_or(-1),
            None => -1,
        };
        StopClientReply {
            was_running: true,
            exit_code: code,
        }
    }

    /// Ends clients left by a previous spawner of this Pi, and fails their
    /// sessions (their client is gone).
    async fn end_orphans(&self) {
        for (sid, pid) in pidfile::leftovers(&self.state_dir) {
            if let Some(pid) = pid {
                tracing::warn!(session = %sid, pid, "Ending a client left by a previous spawner.");
                let group = Pid::from_raw(pid as i32);
                let _ = killpg(group, Signal::SIGTERM);
                let deadline =
                    tokio::time::Instant::now() + Duration::from_millis(self.config.stop_grace_ms);
                while killpg(group, None).is_ok() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = killpg(group, Signal::SIGKILL);
            }
            pidfile::remove(&self.state_dir, &sid);
            let fail = FailSessionRequest {
                session_id: sid.clone(),
                reason: "the Pi's spawner restarted".into(),
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(3),
                self.bus
                    .request::<_, SessionReply>(&endpoints::rooms::FAIL, &fail),
            )
            .await;
        }
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
            audio_devices: self
                .devices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            audio_input: self.audio_input(),
            sessions,
            heartbeat_ms: now_ms(),
            max_sessions: self.config.max_sessions,
        };
        if let Err(e) = bus::kv_put(&self.presence, &self.config.pi_id, &presence).await {
            tracing::warn!(error = %e, "Cannot publish presence.");
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
}
