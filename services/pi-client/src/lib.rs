//! pi-client: one per session on a Pi. Subscribes to the session's play
//! commands, announces its join, and plays each clip (resolved by id through
//! the library) in one long-lived mpv, reporting playback started/finished.

pub mod mpv;

use std::time::Duration;

use bus::subjects::{self, SessionEvent};
use bus::{Bus, names};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::{
    GetClipReply, GetClipRequest, JoinRequest, PlayCommand, PlaybackEvent, PlaybackState,
    SessionReply,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// Set by the spawner (`CINEMA_SESSION_ID`).
    pub session_id: String,
    /// Set by the spawner (`CINEMA_SESSION_TOKEN`).
    pub token: String,
    pub pi_id: String,
    pub mpv_bin: String,
    /// mpv `--vo` (`null` for headless); empty keeps mpv's default.
    pub vo: String,
    /// mpv `--ao` (`null` without a sound card); empty keeps mpv's default.
    pub ao: String,
    /// What the Pi hears (`CINEMA_PI_AUDIO_INPUT`): `none` in this build.
    pub audio_input: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            session_id: String::new(),
            token: String::new(),
            pi_id: "local-pi".into(),
            mpv_bin: "mpv".into(),
            vo: String::new(),
            ao: String::new(),
            audio_input: "none".into(),
        }
    }
}

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_PI_CLIENT_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = &[
        ("CINEMA_SESSION_ID", "session_id"),
        ("CINEMA_SESSION_TOKEN", "token"),
        ("CINEMA_PI_ID", "pi_id"),
        ("CINEMA_PI_AUDIO_INPUT", "audio_input"),
    ];
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
    fn validate(&self) -> Result<(), String> {
        bus::subjects::check_id("session_id (CINEMA_SESSION_ID)", &self.session_id)
            .map_err(|e| e.to_string())?;
        match self.audio_input.as_str() {
            "none" | "" => Ok(()),
            other => Err(format!(
                "audio_input (CINEMA_PI_AUDIO_INPUT) {other:?} is not supported by this build; use `none`"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
    #[error(transparent)]
    Mpv(#[from] mpv::Error),
}

/// The clip on screen.
struct Current {
    cmd: PlayCommand,
    start_s: f64,
    end_s: f64,
    started: bool,
}

pub async fn run(config: Config, bus: Bus, shutdown: CancellationToken) -> Result<(), Error> {
    let sid = config.session_id.clone();
    let opts = mpv::Options {
        bin: config.mpv_bin.clone(),
        vo: config.vo.clone(),
        ao: config.ao.clone(),
        extra_args: Vec::new(),
    };
    let (mut player, mut events) = mpv::Mpv::start(&opts).await?;
    tracing::info!(session = %sid, mpv_pid = player.pid(), "mpv is ready.");
    let service = bus::service::start(
        bus.client(),
        names::service::PI_CLIENT,
        "Plays a session's clips",
    )
    .await?;
    let mut plays = bus
        .client()
        .subscribe(subjects::session(&sid, SessionEvent::Play))
        .await
        .map_err(|e| bus::Error::nats("subscribe", e))?;
    // Join through room-manager: it checks the token and only then announces
    // the join (and the director greets).
    let join = JoinRequest {
        session_id: sid.clone(),
        token: config.token.clone(),
        pi_id: config.pi_id.clone(),
        pid: std::process::id(),
    };
    let _: SessionReply = bus
        .request(subjects::rooms::JOIN.to_string(), &join)
        .await?;
    tracing::info!(session = %sid, "Joined the session.");

    let mut current: Option<Current> = None;
    // A client whose spawner died leaves on its own: nobody else would stop it.
    let parent = nix::unistd::getppid();
    let mut parent_check = tokio::time::interval(Duration::from_millis(500));
    let result = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            _ = parent_check.tick() => {
                if nix::unistd::getppid() != parent {
                    tracing::warn!(session = %sid, "The spawner is gone; leaving the session.");
                    break Ok(());
                }
            }
            msg = plays.next() => {
                let Some(msg) = msg else { break Ok(()) };
                let cmd = match bus::decode_message::<PlayCommand>(&msg) {
                    Ok(c) if c.session_id == sid => c,
                    Ok(c) => {
                        tracing::warn!(session = %sid, other = %c.session_id, "Ignored a play command for another session.");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(session = %sid, error = %e, "Ignored a malformed play command.");
                        continue;
                    }
                };
                if let Some(prev) = current.take() {
                    report(&bus, &prev, PlaybackState::Interrupted, "").await;
                }
                current = play(&bus, &mut player, cmd).await;
            }
            ev = events.recv() => {
                let Some(ev) = ev else {
                    // The IPC stream closed: mpv is gone. Restart it (crash isolation).
                    let status = player.exited().await.ok();
                    tracing::warn!(session = %sid, ?status, "mpv exited; restarting it.");
                    if let Some(c) = current.take() {
                        report(&bus, &c, PlaybackState::Failed, "the player crashed").await;
                    }
                    match mpv::Mpv::start(&opts).await {
                        Ok((p, e)) => { player = p; events = e; continue; }
                        Err(e) => break Err(e.into()),
                    }
                };
                match ev {
                    mpv::Event::PlaybackRestart => {
                        if let Some(c) = current.as_mut().filter(|c| !c.started) {
                            c.started = true;
                            report(&bus, c, PlaybackState::Started, "").await;
                        }
                    }
                    mpv::Event::EndFile { reason, error } => {
                        let state = match reason.as_str() {
                            "eof" => PlaybackState::Finished,
                            "error" => PlaybackState::Failed,
                            // `stop` follows a replacement, already reported.
                            _ => continue,
                        };
                        if let Some(c) = current.take() {
                            report(&bus, &c, state, error.as_deref().unwrap_or("")).await;
                        }
                    }
                }
            }
        }
    };
    player.shutdown().await;
    // Bounded: NATS may be gone too.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        if let Some(c) = current.take() {
            report(&bus, &c, PlaybackState::Interrupted, "session ended").await;
        }
        let _ = service.stop().await;
    })
    .await;
    tracing::info!(session = %sid, "Left the session.");
    result
}

/// Resolves the clip id through the library and starts it; an unknown id is
/// reported as a failed playback, never played.
async fn play(bus: &Bus, player: &mut mpv::Mpv, cmd: PlayCommand) -> Option<Current> {
    let reply: Result<GetClipReply, bus::Error> = bus
        .request_with_timeout(
            subjects::clips::GET.to_string(),
            &GetClipRequest {
                clip_id: cmd.clip_id.clone(),
            },
            Duration::from_secs(3),
        )
        .await;
    let (clip, url) = match reply {
        Ok(GetClipReply {
            clip: Some(clip),
            media_url,
        }) => (clip, media_url),
        Ok(_) => (Default::default(), String::new()),
        Err(e) => {
            tracing::warn!(clip = %cmd.clip_id, error = %e, "Cannot resolve a clip.");
            let failed = Current {
                cmd,
                start_s: 0.0,
                end_s: 0.0,
                started: false,
            };
            report(bus, &failed, PlaybackState::Failed, &e.to_string()).await;
            return None;
        }
    };
    let cur = Current {
        cmd,
        start_s: clip.start_s,
        end_s: clip.end_s,
        started: false,
    };
    if let Err(e) = player.play(&url, clip.start_s, clip.end_s).await {
        report(bus, &cur, PlaybackState::Failed, &e.to_string()).await;
        return None;
    }
    tracing::info!(clip = %clip.id, start = clip.start_s, end = clip.end_s, "Playing.");
    Some(cur)
}

async fn report(bus: &Bus, c: &Current, state: PlaybackState, error: &str) {
    let ev = PlaybackEvent {
        session_id: c.cmd.session_id.clone(),
        command_id: c.cmd.command_id.clone(),
        clip_id: c.cmd.clip_id.clone(),
        state: state as i32,
        start_s: c.start_s,
        end_s: c.end_s,
        error: error.to_string(),
        at_ms: now_ms(),
    };
    let id = format!("playback-{}-{}", c.cmd.command_id, state.as_str_name());
    if let Err(e) = bus
        .publish_durable(
            subjects::session(&c.cmd.session_id, SessionEvent::Playback),
            &ev,
            &id,
        )
        .await
    {
        tracing::warn!(error = %e, "Cannot report playback.");
    }
}
