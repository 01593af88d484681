//! The Pi's ears: capture (or simulation) → 16 kHz mono → the shared
//! [`voice::Ears`] (20 ms level frames for observers, VAD and endpointing,
//! utterances on the work queue). An echo gate, closed while a clip plays
//! and for a tail after it, keeps the TV's own voice from ever becoming an
//! utterance.

pub mod capture;
pub mod input;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bus::Bus;
use bus::subjects::{self, SessionEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::{ClientIssue, ClientIssueKind};

pub use input::Input;
pub use voice::{FRAME_20MS, Gate, vad};

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
    /// The turn model (file or folder) for `vad.turn`'s model mode, and
    /// onnxruntime's library that runs it.
    pub turn_model: std::path::PathBuf,
    pub onnxruntime: std::path::PathBuf,
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
    let mut ears = voice::Ears::new(
        bus.clone(),
        &pi_id,
        &sid,
        &device,
        settings.vad.clone(),
        settings.frames,
        (&settings.onnxruntime, &settings.turn_model),
    );
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
                    hear(&mut ears, &notices, &chunk, gate.is_open()).await;
                }
            }
            chunk = live.recv(), if sim.is_none() => match chunk {
                Some(Chunk::Samples(pcm)) => {
                    last_failure.clear();
                    hear(&mut ears, &notices, &pcm, gate.is_open()).await;
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
                    hear(&mut ears, &notices, &vec![0; 16_000], true).await;
                    shutdown.cancelled().await;
                    break;
                }
            },
        }
    }
    stop_live.cancel();
    // An utterance said just before the end still reaches the hub (bounded:
    // the link may be down for good).
    ears.settle(Duration::from_secs(2)).await;
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

/// Hears samples; speech over a playing clip is told to the player (barge-in).
async fn hear(
    ears: &mut voice::Ears<voice::Detector>,
    notices: &mpsc::UnboundedSender<Notice>,
    pcm: &[i16],
    open: bool,
) {
    if let Some(ms) = ears.hear(pcm, open).await.speech_over_clip_ms {
        let _ = notices.send(Notice::SpeechOverClip { ms });
    }
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
