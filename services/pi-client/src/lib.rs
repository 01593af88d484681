//! pi-client: one per session on a Pi. Takes the session's play commands
//! (handed over by room-manager, each played once), announces its join, and plays each clip (resolved by id through
//! the library) in one long-lived mpv, reporting playback started/finished.

pub mod audio;
pub mod mpv;

use std::sync::Arc;
use std::time::Duration;

use bus::endpoints;
use bus::subjects::{self, SessionEvent};
use bus::{Bus, names};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::{
    GetClipReply, GetClipRequest, JoinRequest, PlayCommand, PlayDelivered, PlayDelivery,
    PlaybackEvent, PlaybackState, SessionReply, SetAudioInput,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// Set by the spawner (`CINEMA_SESSION_ID`).
    pub session_id: String,
    /// Set by the spawner (`CINEMA_SESSION_TOKEN`).
    pub token: String,
    #[serde(deserialize_with = "plumbing::config::lenient_string")]
    pub pi_id: String,
    pub mpv_bin: String,
    /// mpv `--vo` (`null` for headless); empty keeps mpv's default.
    pub vo: String,
    /// mpv `--ao` (`null` without a sound card); empty keeps mpv's default.
    pub ao: String,
    /// More mpv options, separated by spaces (`--hwdec=auto
    /// --audio-device=alsa/hdmi:CARD=vc4hdmi0`).
    pub mpv_args: String,
    /// A clip that has not started this long after its play command failed
    /// (the gate reopens).
    pub start_timeout_ms: u32,
    /// A started clip that has not ended this long after its length failed.
    pub end_grace_ms: u32,
    /// What the Pi hears (`CINEMA_PI_AUDIO_INPUT`): `none`, `wav:PATH`,
    /// `wav-loop:PATH`, `stdin` (s16le 16 kHz mono) or `alsa:DEVICE`.
    pub audio_input: String,
    /// Silence that ends the visitor's turn (`turn_mode = "silence"`, or
    /// no turn model).
    pub end_silence_ms: u32,
    /// How the end of the visitor's turn is decided (`turn_mode`,
    /// `turn_model` = `CINEMA_TURN_MODEL`, `turn_pause_ms`,
    /// `turn_recheck_ms`, `turn_complete_threshold`, `turn_max_silence_ms`).
    #[serde(flatten)]
    pub turn: voice::turn::TurnConfig,
    /// Shorter speech is dropped.
    pub min_speech_ms: u32,
    /// Longer speech is cut and sent in parts.
    pub max_utterance_ms: u32,
    /// Audio kept from before speech was detected.
    pub pre_roll_ms: u32,
    /// earshot score (0–1) from which a frame is speech.
    pub vad_threshold: f32,
    /// The echo gate stays closed this long after a clip ends.
    pub echo_tail_ms: u32,
    /// Close the ears while clips play (off only where the TV cannot be
    /// heard by the microphone, e.g. headphones).
    pub echo_gate: bool,
    /// Speech over a playing clip stops it (off: the TV's own voice would).
    pub barge_in: bool,
    /// How long the visitor must speak over a clip to stop it.
    pub barge_in_ms: u32,
    /// Simulation: the mic hears the clips the TV plays (decoded with ffmpeg).
    pub simulate_echo: bool,
    /// Publish 20 ms level frames for observers (meters, recorders).
    pub audio_frames: bool,
    /// A synced copy of the film library on this Pi (`CINEMA_PI_LOCAL_LIBRARY`):
    /// films found there are played from disk, the rest over HTTP.
    pub local_library: String,
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
            mpv_args: String::new(),
            start_timeout_ms: 10_000,
            end_grace_ms: 5_000,
            audio_input: "none".into(),
            end_silence_ms: 250,
            turn: voice::turn::TurnConfig::default(),
            min_speech_ms: 250,
            max_utterance_ms: 15_000,
            pre_roll_ms: 300,
            vad_threshold: 0.5,
            echo_tail_ms: 500,
            echo_gate: true,
            barge_in: false,
            barge_in_ms: 400,
            simulate_echo: false,
            audio_frames: true,
            local_library: String::new(),
        }
    }
}

impl plumbing::Settings for Config {
    const MAKES_TOPOLOGY: bool = false;
    const ENV_PREFIX: &'static str = "CINEMA_PI_CLIENT_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = &[
        ("CINEMA_SESSION_ID", "session_id"),
        ("CINEMA_SESSION_TOKEN", "token"),
        ("CINEMA_PI_ID", "pi_id"),
        ("CINEMA_PI_AUDIO_INPUT", "audio_input"),
        ("CINEMA_PI_LOCAL_LIBRARY", "local_library"),
        ("CINEMA_TURN_MODEL", "turn_model"),
        ("CINEMA_ONNXRUNTIME", "onnxruntime"),
    ];
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
    fn validate(&self) -> Result<(), String> {
        bus::subjects::check_id("session_id (CINEMA_SESSION_ID)", &self.session_id)
            .map_err(|e| e.to_string())?;
        let input: audio::Input = self
            .audio_input
            .parse()
            .map_err(|e| format!("audio_input (CINEMA_PI_AUDIO_INPUT): {e}"))?;
        if let audio::Input::Wav(p) | audio::Input::WavLoop(p) = &input
            && !p.is_file()
        {
            return Err(format!(
                "audio_input (CINEMA_PI_AUDIO_INPUT): {} is not a file",
                p.display()
            ));
        }
        if !(0.0..=1.0).contains(&self.vad_threshold) || self.end_silence_ms == 0 {
            return Err("vad_threshold must be within 0–1 and end_silence_ms above 0".into());
        }
        self.turn.params()?;
        Ok(())
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
    /// The Pi: its playback events go under its prefix.
    pi: String,
    cmd: PlayCommand,
    url: String,
    start_s: f64,
    end_s: f64,
    started: bool,
    /// When the clip fails if it has not started (or, once started, ended).
    deadline: tokio::time::Instant,
    /// Its playlist entry in mpv (`None`: mpv did not say), and whether mpv
    /// has begun loading it: until then a playback-restart or end-file
    /// read from the socket belongs to an earlier clip.
    entry: Option<i64>,
    loading: bool,
}

impl Current {
    /// Whether an event of playlist entry `entry` is this clip's.
    fn owns(&self, entry: Option<i64>) -> bool {
        match (self.entry, entry) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        }
    }
}

pub async fn run(config: Config, bus: Bus, shutdown: CancellationToken) -> Result<(), Error> {
    let sid = config.session_id.clone();
    let opts = mpv::Options {
        bin: config.mpv_bin.clone(),
        vo: config.vo.clone(),
        ao: config.ao.clone(),
        extra_args: config
            .mpv_args
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    };
    let end_grace = Duration::from_millis(config.end_grace_ms.into());
    let (mut player, mut events) = mpv::Mpv::start(&opts).await?;
    let gate = Arc::new(audio::Gate::default());
    let (notice_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let input: audio::Input = config.audio_input.parse().unwrap_or(audio::Input::None);
    let mut ears = Ears::start(&bus, &config, input, &gate, &notice_tx);
    // The Pi's audio input can be switched over the bus without a restart.
    let mut input_changes = bus
        .client()
        .subscribe(subjects::pi_audio_input_changed(&config.pi_id))
        .await
        .map_err(|e| bus::Error::nats("subscribe", e))?;
    let tail = Duration::from_millis(config.echo_tail_ms.into());
    tracing::info!(session = %sid, mpv_pid = player.pid(), "mpv is ready.");
    let service = bus::service::start(
        bus.client(),
        names::service::PI_CLIENT,
        "Plays a session's clips",
    )
    .await?;
    // Play commands come from room-manager as requests: answered at once
    // (so it stops trying), played once per command id.
    let delivery = endpoints::pi_delivery(&config.pi_id, &sid);
    let mut plays = bus
        .client()
        .subscribe(delivery.subject().to_string())
        .await
        .map_err(|e| bus::Error::nats("subscribe", e))?;
    let mut admitted = Admitted::default();
    // Playback reports go through an outbox: in order, never holding up the
    // player, and kept while the link to the hub is down.
    let reports = bus::Outbox::start(bus.clone(), bus::outbox::OUTBOX_PATIENCE);
    // Subscribed before room-manager hears of the join (and delivers).
    bus::round_trip(bus.client(), bus::REQUEST_TIMEOUT).await?;
    // Join through room-manager: it checks the token and only then announces
    // the join (and the director greets).
    let join = JoinRequest {
        session_id: sid.clone(),
        token: config.token.clone(),
        pi_id: config.pi_id.clone(),
        pid: std::process::id(),
    };
    let _: SessionReply = bus.request(&endpoints::rooms::JOIN, &join).await?;
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
                let (cmd, expires_at_ms) = match delivery.decode_request(&msg) {
                    Ok(PlayDelivery { command: Some(c), expires_at_ms }) if c.session_id == sid => (c, expires_at_ms),
                    Ok(d) => {
                        tracing::warn!(session = %sid, other = ?d.command.map(|c| c.session_id), "Ignored a play command for another session.");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(session = %sid, error = %e, "Ignored a malformed play command.");
                        continue;
                    }
                };
                // Too late (held up on the way): room-manager reports it.
                let expired = expires_at_ms > 0 && now_ms() > expires_at_ms;
                let fresh = !expired && admitted.admit(&cmd.command_id);
                if let Some(reply) = msg.reply {
                    let answer = PlayDelivered {
                        command_id: cmd.command_id.clone(),
                        duplicate: !fresh && !expired,
                        expired,
                    };
                    if let Err(e) = delivery.answer(bus.client(), reply, &answer).await {
                        tracing::warn!(session = %sid, error = %e, "Cannot answer a play command's delivery.");
                    }
                }
                if expired {
                    tracing::warn!(session = %sid, command = %cmd.command_id, "A play command came after its bound; not played.");
                    continue;
                }
                if !fresh {
                    tracing::info!(session = %sid, command = %cmd.command_id, "A play command came again; it plays once.");
                    continue;
                }
                if let Some(prev) = current.take() {
                    report(&reports, &prev, PlaybackState::Interrupted, "");
                    let _ = ears.tx.send(audio::Control::EchoStop);
                }
                // Deaf from before the first sound of the clip.
                if config.echo_gate {
                    gate.close();
                }
                let greeting = cmd.greeting;
                current = play(&bus, &reports, &config, &mut player, cmd).await;
                if current.is_none() {
                    gate.open_after(Duration::ZERO);
                    if greeting {
                        let _ = ears.tx.send(audio::Control::GreetingOver);
                    }
                }
            }
            change = input_changes.next() => {
                let Some(change) = change else { continue };
                match bus::decode_message::<SetAudioInput>(&change)
                    .map_err(|e| e.to_string())
                    .and_then(|c| c.audio_input.parse::<audio::Input>())
                {
                    Ok(input) => {
                        tracing::info!(session = %sid, input = %input.device_name(), "Switching the audio input.");
                        ears.stop().await;
                        ears = Ears::start(&bus, &config, input, &gate, &notice_tx);
                        if current.is_none() {
                            // The greeting is long over: a new visitor may speak.
                            let _ = ears.tx.send(audio::Control::GreetingOver);
                        }
                    }
                    Err(e) => tracing::warn!(session = %sid, error = %e, "Ignored a bad audio input change."),
                }
            }
            notice = notices.recv() => {
                let Some(audio::Notice::SpeechOverClip { ms }) = notice else { continue };
                if config.barge_in && ms >= config.barge_in_ms
                    && let Some(c) = current.take()
                {
                    tracing::info!(session = %sid, clip = %c.cmd.clip_id, "The visitor spoke over the clip; stopping it.");
                    let _ = player.stop().await;
                    report(&reports, &c, PlaybackState::Interrupted, "the visitor spoke");
                    let _ = ears.tx.send(audio::Control::EchoStop);
                    gate.open_after(Duration::ZERO);
                }
            }
            () = tokio::time::sleep_until(current.as_ref().map_or_else(far_future, |c| c.deadline)), if current.is_some() => {
                // A clip that never starts or never ends: fail it, so the
                // gate reopens and the next line is heard.
                let Some(c) = current.take() else { continue };
                let why = if c.started { "the clip did not end in time" } else { "the clip did not start in time" };
                tracing::warn!(session = %sid, clip = %c.cmd.clip_id, why, "Gave up on a clip.");
                let _ = player.stop().await;
                report(&reports, &c, PlaybackState::Failed, why);
                finished(&ears.tx, &gate, &c, tail);
            }
            ev = events.recv() => {
                let Some(ev) = ev else {
                    // The IPC stream closed: mpv is gone. Restart it (crash isolation).
                    let status = player.exited().await.ok();
                    tracing::warn!(session = %sid, ?status, "mpv exited; restarting it.");
                    if let Some(c) = current.take() {
                        report(&reports, &c, PlaybackState::Failed, "the player crashed");
                        finished(&ears.tx, &gate, &c, tail);
                    }
                    match mpv::Mpv::start(&opts).await {
                        Ok((p, e)) => { player = p; events = e; continue; }
                        Err(e) => break Err(e.into()),
                    }
                };
                match ev {
                    mpv::Event::StartFile { entry } => {
                        if let Some(c) = current.as_mut().filter(|c| c.owns(entry)) {
                            c.loading = true;
                        }
                    }
                    mpv::Event::PlaybackRestart => {
                        if let Some(c) = current.as_mut().filter(|c| !c.started && c.loading) {
                            c.started = true;
                            c.deadline = tokio::time::Instant::now()
                                + Duration::from_secs_f64((c.end_s - c.start_s).clamp(0.0, 86_400.0))
                                + end_grace;
                            report(&reports, c, PlaybackState::Started, "");
                            if config.simulate_echo {
                                let tx = ears.tx.clone();
                                let (url, start, end) = (c.url.clone(), c.start_s, c.end_s);
                                tokio::spawn(async move {
                                    match audio::input::decode_clip(&url, start, end).await {
                                        Ok(pcm) => { let _ = tx.send(audio::Control::Echo(pcm)); }
                                        Err(e) => tracing::warn!(error = %e, "Cannot simulate the clip's echo."),
                                    }
                                });
                            }
                        }
                    }
                    mpv::Event::EndFile { reason, error, entry } => {
                        // An earlier clip's end, read late: not this one's.
                        if !current.as_ref().is_some_and(|c| c.owns(entry)) {
                            continue;
                        }
                        let state = match reason.as_str() {
                            "eof" => PlaybackState::Finished,
                            "error" => PlaybackState::Failed,
                            // `stop` follows a replacement, already reported.
                            _ => continue,
                        };
                        if let Some(c) = current.take() {
                            report(&reports, &c, state, error.as_deref().unwrap_or(""));
                            finished(&ears.tx, &gate, &c, tail);
                        }
                    }
                }
            }
        }
    };
    ears.stop().await;
    player.shutdown().await;
    if let Some(c) = current.take() {
        report(&reports, &c, PlaybackState::Interrupted, "session ended");
    }
    // Bounded: NATS may be gone too.
    reports.settle(Duration::from_secs(2)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), service.stop()).await;
    tracing::info!(session = %sid, "Left the session.");
    result
}

/// The ears of the client: the audio task and its control channel.
struct Ears {
    tx: tokio::sync::mpsc::UnboundedSender<audio::Control>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Ears {
    fn start(
        bus: &Bus,
        config: &Config,
        input: audio::Input,
        gate: &Arc<audio::Gate>,
        notices: &tokio::sync::mpsc::UnboundedSender<audio::Notice>,
    ) -> Ears {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let settings = audio::Settings {
            session_id: config.session_id.clone(),
            pi_id: config.pi_id.clone(),
            input,
            vad: audio::vad::Params {
                threshold: config.vad_threshold,
                end_silence_ms: config.end_silence_ms,
                min_speech_ms: config.min_speech_ms,
                max_utterance_ms: config.max_utterance_ms,
                pre_roll_ms: config.pre_roll_ms,
                // Checked when the configuration was read.
                turn: config.turn.params().unwrap_or_default(),
                ..Default::default()
            },
            turn_model: config.turn.model(),
            onnxruntime: config.turn.runtime(),
            frames: config.audio_frames,
            simulate_echo: config.simulate_echo,
        };
        let task = tokio::spawn(audio::run(
            bus.clone(),
            settings,
            gate.clone(),
            rx,
            notices.clone(),
            stop.clone(),
        ));
        Ears { tx, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
    }
}

/// A clip is over: the ears open after the tail (the room's echo dies
/// down), and after the greeting a simulated visitor may answer.
/// An instant no clip reaches (the deadline arm is off without a clip).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

fn finished(
    ears: &tokio::sync::mpsc::UnboundedSender<audio::Control>,
    gate: &audio::Gate,
    c: &Current,
    tail: Duration,
) {
    gate.open_after(tail);
    let _ = ears.send(audio::Control::EchoStop);
    if c.cmd.greeting {
        let _ = ears.send(audio::Control::GreetingOver);
    }
}

/// Resolves the clip id through the library and starts it; an unknown id is
/// reported as a failed playback, never played.
async fn play(
    bus: &Bus,
    reports: &bus::Outbox,
    config: &Config,
    player: &mut mpv::Mpv,
    cmd: PlayCommand,
) -> Option<Current> {
    let pi = config.pi_id.as_str();
    let reply: Result<GetClipReply, bus::Error> = bus
        .request_with_timeout(
            &endpoints::clips::GET,
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
            film_path,
        }) => match local_copy(&config.local_library, &film_path) {
            Some(file) => (clip, file.to_string_lossy().into_owned()),
            None => (clip, media_url),
        },
        Ok(_) => (Default::default(), String::new()),
        Err(e) => {
            tracing::warn!(clip = %cmd.clip_id, error = %e, "Cannot resolve a clip.");
            let failed = Current {
                pi: pi.to_string(),
                cmd,
                url: String::new(),
                start_s: 0.0,
                end_s: 0.0,
                started: false,
                deadline: tokio::time::Instant::now(),
                entry: None,
                loading: false,
            };
            report(reports, &failed, PlaybackState::Failed, &e.to_string());
            return None;
        }
    };
    let mut cur = Current {
        pi: pi.to_string(),
        cmd,
        url: url.clone(),
        start_s: clip.start_s,
        end_s: clip.end_s,
        started: false,
        deadline: tokio::time::Instant::now()
            + Duration::from_millis(config.start_timeout_ms.into()),
        entry: None,
        loading: false,
    };
    match player.play(&url, clip.start_s, clip.end_s).await {
        Ok(entry) => {
            cur.entry = entry;
            // Without an entry id nothing tells files apart: as before.
            cur.loading = entry.is_none();
        }
        Err(e) => {
            report(reports, &cur, PlaybackState::Failed, &e.to_string());
            return None;
        }
    }
    tracing::info!(clip = %clip.id, start = clip.start_s, end = clip.end_s, "Playing.");
    Some(cur)
}

/// The film in the Pi's synced library, when there is one: `rel` must be a
/// plain relative path (no root, no `..`), so nothing outside the copy is
/// ever opened.
pub fn local_copy(root: &str, rel: &str) -> Option<std::path::PathBuf> {
    use std::path::{Component, Path};
    if root.is_empty() || rel.is_empty() {
        return None;
    }
    let rel = Path::new(rel);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        tracing::warn!(path = %rel.display(), "A film path outside the library was refused.");
        return None;
    }
    let file = Path::new(root).join(rel);
    file.is_file().then_some(file)
}

fn report(reports: &bus::Outbox, c: &Current, state: PlaybackState, error: &str) {
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
    let id = bus::ids::playback(&c.cmd.command_id, state);
    reports.send(
        subjects::pi_session(&c.pi, &c.cmd.session_id, SessionEvent::Playback),
        &ev,
        &id,
    );
}

/// The play commands this client has taken, by id: one delivered again
/// (room-manager tried again after a lost answer, or a service published
/// it twice) is not played again. Remembers the last [`Admitted::KEEP`].
#[derive(Default)]
struct Admitted {
    order: std::collections::VecDeque<String>,
    ids: std::collections::HashSet<String>,
}

impl Admitted {
    const KEEP: usize = 1024;

    /// Whether `command_id` is new (and now taken).
    fn admit(&mut self, command_id: &str) -> bool {
        if !self.ids.insert(command_id.to_string()) {
            return false;
        }
        self.order.push_back(command_id.to_string());
        if self.order.len() > Self::KEEP
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_admitted_once() {
        let mut a = Admitted::default();
        assert!(a.admit("c1"));
        assert!(!a.admit("c1"));
        assert!(a.admit("c2"));
        for i in 0..Admitted::KEEP {
            assert!(a.admit(&format!("x{i}")));
        }
        // The oldest are forgotten, the recent kept.
        assert!(a.admit("c1"));
        assert!(!a.admit(&format!("x{}", Admitted::KEEP - 1)));
        assert!(a.ids.len() <= Admitted::KEEP);
    }

    #[test]
    fn a_local_copy_is_used_only_inside_its_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("noir")).unwrap();
        std::fs::write(dir.path().join("noir/film.mp4"), b"x").unwrap();
        let root = dir.path().to_str().unwrap();
        assert_eq!(
            local_copy(root, "noir/film.mp4"),
            Some(dir.path().join("noir/film.mp4"))
        );
        // Not synced yet: over HTTP.
        assert_eq!(local_copy(root, "noir/other.mp4"), None);
        // Never outside the copy.
        assert_eq!(local_copy(root, "../etc/passwd"), None);
        assert_eq!(local_copy(root, "noir/../../x"), None);
        assert_eq!(local_copy(root, "/etc/passwd"), None);
        // Not configured.
        assert_eq!(local_copy("", "noir/film.mp4"), None);
    }
}
