//! The Pi's ears: capture (or simulation) → 16 kHz mono → 20 ms level
//! frames for observers → VAD and endpointing → utterances on the work
//! queue. An echo gate, closed while a clip plays and for a tail after it,
//! keeps the TV's own voice from ever becoming an utterance.

pub mod capture;
pub mod input;
pub mod vad;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bus::Bus;
use bus::subjects::{self, SessionEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::{AudioFrame, ClientIssue, ClientIssueKind, Utterance};

pub use input::Input;

/// Samples in one 20 ms frame at 16 kHz.
pub const FRAME_20MS: usize = 320;

/// Closed while a clip plays; opens `tail` after it ends.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<(bool, Instant)>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            state: Mutex::new((false, Instant::now())),
        }
    }
}

impl Gate {
    pub fn close(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (true, Instant::now());
    }

    pub fn open_after(&self, tail: Duration) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (false, Instant::now() + tail);
    }

    pub fn is_open(&self) -> bool {
        let (closed, open_at) = *self.state.lock().unwrap_or_else(|p| p.into_inner());
        !closed && Instant::now() >= open_at
    }
}

/// What the player tells the ears.
#[derive(Debug)]
pub enum Control {
    /// The greeting has finished: a `wav:` visitor may answer now.
    GreetingOver,
    /// The clip now playing sounds like this (simulated echo into the mic).
    Echo(Vec<i16>),
    /// The clip stopped: its echo stops too.
    EchoStop,
}

/// What the ears tell the player.
#[derive(Debug, PartialEq)]
pub enum Notice {
    /// The visitor spoke over the clip for this long (barge-in).
    SpeechOverClip { ms: u32 },
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub session_id: String,
    pub pi_id: String,
    pub input: Input,
    pub vad: vad::Params,
    /// Publish 20 ms level frames on the session's audio subject.
    pub frames: bool,
    /// The mic hears the clips the TV plays (simulation of acoustic echo).
    pub simulate_echo: bool,
}

/// 16 kHz chunks from a live source (stdin, ALSA), or why it failed.
pub enum Chunk {
    Samples(Vec<i16>),
    Failed(String),
}

/// Runs until shutdown (or the end of stdin). Never fails the session: a
/// missing microphone is reported and retried.
pub async fn run(
    bus: Bus,
    settings: Settings,
    gate: Arc<Gate>,
    mut control: mpsc::UnboundedReceiver<Control>,
    notices: mpsc::UnboundedSender<Notice>,
    shutdown: CancellationToken,
) {
    let (sid, pi_id) = (settings.session_id.clone(), settings.pi_id.clone());
    let device = settings.input.device_name();
    let mut ears = Ears {
        bus: bus.clone(),
        pi: pi_id.clone(),
        sid: sid.clone(),
        device: device.clone(),
        frames: settings.frames,
        vad: vad::Endpointer::new(detector(), settings.vad.clone()),
        seq: 0,
        frame_buf: Vec::new(),
        notices,
    };
    let mut sim = match &settings.input {
        Input::None | Input::Wav(_) | Input::WavLoop(_) => {
            let (wav, looped) = match &settings.input {
                Input::Wav(p) => (Some(p), false),
                Input::WavLoop(p) => (Some(p), true),
                _ => (None, false),
            };
            let pcm = match wav.map(|p| input::read_wav(p)).transpose() {
                Ok(pcm) => pcm.unwrap_or_default(),
                Err(e) => {
                    issue(&bus, &sid, &pi_id, &e).await;
                    Vec::new()
                }
            };
            if pcm.is_empty() && !settings.simulate_echo {
                // Deaf: nothing to hear, nothing to do.
                shutdown.cancelled().await;
                return;
            }
            Some(SimMic {
                pcm,
                pos: 0,
                looped,
                armed: looped,
                started: false,
                echo: VecDeque::new(),
            })
        }
        _ => None,
    };
    let (live_tx, mut live) = mpsc::unbounded_channel::<Chunk>();
    let stop_live = CancellationToken::new();
    match &settings.input {
        Input::Stdin => capture::stdin(live_tx, stop_live.clone()),
        Input::Alsa(name) => capture::alsa(name.clone(), live_tx, stop_live.clone()),
        _ => drop(live_tx),
    }
    tracing::info!(session = %sid, input = %device, "Listening.");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut last_failure = String::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            c = control.recv() => match (c, sim.as_mut()) {
                (None, _) => break,
                (Some(Control::GreetingOver), Some(s)) => s.armed = true,
                (Some(Control::Echo(pcm)), Some(s)) if settings.simulate_echo => {
                    s.echo = pcm.into();
                }
                (Some(Control::EchoStop), Some(s)) => s.echo.clear(),
                _ => {}
            },
            _ = tick.tick(), if sim.is_some() => {
                if let Some(s) = sim.as_mut() {
                    let chunk = s.next(gate.is_open());
                    ears.hear(&chunk, gate.is_open()).await;
                }
            }
            chunk = live.recv(), if sim.is_none() => match chunk {
                Some(Chunk::Samples(pcm)) => {
                    last_failure.clear();
                    ears.hear(&pcm, gate.is_open()).await;
                }
                Some(Chunk::Failed(why)) => {
                    if why != last_failure {
                        tracing::warn!(session = %sid, input = %device, error = %why, "The audio input failed; retrying.");
                        issue(&bus, &sid, &pi_id, &why).await;
                        last_failure = why;
                    }
                }
                None => {
                    tracing::info!(session = %sid, input = %device, "The audio input ended.");
                    // Whatever was being said is finished now.
                    ears.hear(&vec![0; 16_000], true).await;
                    shutdown.cancelled().await;
                    break;
                }
            },
        }
    }
    stop_live.cancel();
}

/// earshot's neural VAD (pure Rust, weights built in).
fn detector() -> impl FnMut(&[i16]) -> f32 {
    let mut d = earshot::Detector::default();
    move |frame: &[i16]| d.predict_i16(frame)
}

/// The simulated microphone: a WAV visitor plus the TV's own sound.
struct SimMic {
    pcm: Vec<i16>,
    pos: usize,
    looped: bool,
    /// The visitor may start (after the greeting).
    armed: bool,
    started: bool,
    echo: VecDeque<i16>,
}

impl SimMic {
    fn next(&mut self, gate_open: bool) -> Vec<i16> {
        let mut out = vec![0i16; FRAME_20MS];
        if self.armed && (self.started || gate_open) && !self.pcm.is_empty() {
            self.started = true;
            for o in out.iter_mut() {
                if self.pos >= self.pcm.len() {
                    if !self.looped {
                        break;
                    }
                    self.pos = 0;
                }
                *o = self.pcm[self.pos];
                self.pos += 1;
            }
        }
        for o in out.iter_mut() {
            let Some(e) = self.echo.pop_front() else {
                break;
            };
            *o = o.saturating_add(e);
        }
        out
    }
}

struct Ears<D: FnMut(&[i16]) -> f32> {
    bus: Bus,
    pi: String,
    sid: String,
    device: String,
    frames: bool,
    vad: vad::Endpointer<D>,
    seq: u64,
    frame_buf: Vec<i16>,
    notices: mpsc::UnboundedSender<Notice>,
}

impl<D: FnMut(&[i16]) -> f32> Ears<D> {
    async fn hear(&mut self, pcm: &[i16], open: bool) {
        if self.frames {
            self.frame_buf.extend_from_slice(pcm);
            while self.frame_buf.len() >= FRAME_20MS {
                let frame: Vec<i16> = self.frame_buf.drain(..FRAME_20MS).collect();
                self.seq += 1;
                let f = AudioFrame {
                    session_id: self.sid.clone(),
                    seq: self.seq,
                    sample_rate: vad::RATE,
                    level: vad::level(&frame),
                    pcm: frame.iter().flat_map(|s| s.to_le_bytes()).collect(),
                };
                // Observers only: best effort, never in the way.
                let _ = self
                    .bus
                    .publish(subjects::audio(&self.pi, &self.sid), &f)
                    .await;
            }
        }
        for event in self.vad.push(pcm, open) {
            match event {
                vad::Event::Utterance {
                    pcm,
                    speech_start,
                    speech_end,
                    cut,
                } => {
                    let now = now_ms();
                    let clock = self.vad.clock();
                    let ms_ago =
                        |at: u64| (clock.saturating_sub(at) * 1000 / vad::RATE as u64) as i64;
                    let u = Utterance {
                        session_id: self.sid.clone(),
                        utterance_id: uuid::Uuid::new_v4().to_string(),
                        sample_rate: vad::RATE,
                        pcm: pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
                        speech_start_ms: now - ms_ago(speech_start),
                        speech_end_ms: now - ms_ago(speech_end),
                        device: self.device.clone(),
                    };
                    tracing::info!(
                        session = %self.sid,
                        utterance = %u.utterance_id,
                        ms = pcm.len() * 1000 / vad::RATE as usize,
                        cut,
                        "Heard an utterance."
                    );
                    let bus = self.bus.clone();
                    tokio::spawn(publish_utterance(bus, self.pi.clone(), u));
                }
                vad::Event::SpeechWhileGated { ms } => {
                    let _ = self.notices.send(Notice::SpeechOverClip { ms });
                }
            }
        }
    }
}

/// Publishes once, with the utterance id as message id (a retry after a
/// lost ack is deduplicated by the stream).
async fn publish_utterance(bus: Bus, pi: String, u: Utterance) {
    for attempt in 1..=5u64 {
        match bus
            .publish_durable(subjects::utterance(&pi, &u.session_id), &u, &u.utterance_id)
            .await
        {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(utterance = %u.utterance_id, attempt, error = %e, "Cannot publish an utterance; retrying.");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
    tracing::error!(utterance = %u.utterance_id, "Gave up publishing an utterance.");
}

/// Tells the operator the microphone has a problem.
async fn issue(bus: &Bus, sid: &str, pi_id: &str, detail: &str) {
    let ev = ClientIssue {
        session_id: sid.to_string(),
        pi_id: pi_id.to_string(),
        kind: ClientIssueKind::AudioInput as i32,
        detail: detail.to_string(),
        at_ms: now_ms(),
        ..Default::default()
    };
    if let Err(e) = bus
        .publish(subjects::pi_session(pi_id, sid, SessionEvent::Client), &ev)
        .await
    {
        tracing::warn!(error = %e, "Cannot report an audio input problem.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_opens_only_after_the_tail() {
        let g = Gate::default();
        assert!(g.is_open());
        g.close();
        assert!(!g.is_open());
        g.open_after(Duration::from_millis(60));
        assert!(!g.is_open());
        std::thread::sleep(Duration::from_millis(80));
        assert!(g.is_open());
    }

    #[test]
    fn the_simulated_visitor_waits_for_the_greeting_and_the_gate() {
        let mut mic = SimMic {
            pcm: vec![7; 500],
            pos: 0,
            looped: false,
            armed: false,
            started: false,
            echo: VecDeque::new(),
        };
        assert!(
            mic.next(true).iter().all(|&s| s == 0),
            "not before the greeting"
        );
        mic.armed = true;
        assert!(
            mic.next(false).iter().all(|&s| s == 0),
            "not while the TV talks"
        );
        assert!(mic.next(true).iter().all(|&s| s == 7));
        // Once started it goes on even if the gate closes (the visitor talks on).
        let second = mic.next(false);
        assert_eq!(second.iter().filter(|&&s| s == 7).count(), 500 - FRAME_20MS);
        assert!(mic.next(true).iter().all(|&s| s == 0), "heard once");
        // The TV's sound adds to what the mic hears.
        mic.echo = vec![100; 10].into();
        let e = mic.next(true);
        assert_eq!(
            &e[..11],
            &[100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 0]
        );
    }
}
