//! The ears of a session's "TV", wherever its microphone is: pi-client's
//! (ALSA, or a simulation) and the dashboard-gateway's (a browser's
//! microphone over a WebSocket) run this same code. 16 kHz mono samples in;
//! out come 20 ms level frames on the session's audio subject (for meters:
//! the level, never the samples),
//! and utterances cut by earshot's VAD and the [`vad::Endpointer`] on the
//! `CINEMA_UTTERANCES` work queue (message id = utterance id). An echo
//! [`Gate`], closed while a clip plays and for a tail after it, keeps the
//! TV's own voice from ever becoming an utterance.

pub mod features;
pub mod turn;
pub mod vad;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bus::Bus;
use bus::subjects;
use wire::now_ms;
use wire::v1::{AudioFrame, Utterance};

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

/// earshot's neural VAD (pure Rust, weights built in).
pub fn detector() -> impl FnMut(&[i16]) -> f32 + Send {
    let mut d = earshot::Detector::default();
    move |frame: &[i16]| d.predict_i16(frame)
}

/// earshot's detector, boxed: the detector of [`Ears::new`].
pub type Detector = Box<dyn FnMut(&[i16]) -> f32 + Send>;

/// An utterance the ears put on the work queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub utterance_id: String,
    /// Its length in milliseconds (pre-roll and end silence included).
    pub ms: u64,
}

/// What one [`Ears::hear`] found.
#[derive(Debug, Default, PartialEq)]
pub struct Heard {
    /// Utterances published (in the background, retried).
    pub utterances: Vec<Sent>,
    /// The visitor has been speaking over a playing clip this long (for
    /// barge-in); `None` when no speech was heard with the gate closed.
    pub speech_over_clip_ms: Option<u32>,
}

/// One session's ears: level frames, endpointing, utterances.
pub struct Ears<D: FnMut(&[i16]) -> f32> {
    bus: Bus,
    /// Utterances go through it, in order, and outlive a cut link.
    outbox: bus::Outbox,
    /// The prefix its frames and utterances go under
    /// (`cinema.pi.{pi}.session.{sid}.*`).
    pi: String,
    sid: String,
    device: String,
    frames: bool,
    vad: vad::Endpointer<D>,
    seq: u64,
    frame_buf: Vec<i16>,
}

impl Ears<Detector> {
    /// Ears on earshot's VAD for session `session_id` of Pi `pi_id` (whose
    /// subjects it publishes on: `browser` for a browser session). `device`
    /// names the capture device in every utterance (`alsa:default`,
    /// `browser`, …); `frames` publishes 20 ms level frames. In
    /// [`vad::TurnMode::Model`], `turn_model` (the file or its folder) on
    /// `onnxruntime` (its library) decides the end of turns; without them,
    /// silence does.
    pub fn new(
        bus: Bus,
        pi_id: &str,
        session_id: &str,
        device: &str,
        params: vad::Params,
        frames: bool,
        (onnxruntime, turn_model): (&std::path::Path, &std::path::Path),
    ) -> Self {
        let detect: Detector = Box::new(detector());
        let judge = (params.turn.mode == vad::TurnMode::Model)
            .then(|| turn::judge(onnxruntime, turn_model))
            .flatten();
        let mut ears = Ears::with_detector(bus, pi_id, session_id, device, params, frames, detect);
        if let Some(judge) = judge {
            ears.vad = ears.vad.with_judge(judge);
        }
        ears
    }
}

impl<D: FnMut(&[i16]) -> f32> Ears<D> {
    /// Ears on any detector (tests use a loudness stand-in).
    pub fn with_detector(
        bus: Bus,
        pi_id: &str,
        session_id: &str,
        device: &str,
        params: vad::Params,
        frames: bool,
        detect: D,
    ) -> Self {
        Ears {
            outbox: bus::Outbox::start(bus.clone(), bus::outbox::OUTBOX_PATIENCE),
            bus,
            pi: pi_id.to_string(),
            sid: session_id.to_string(),
            device: device.to_string(),
            frames,
            vad: vad::Endpointer::new(detect, params),
            seq: 0,
            frame_buf: Vec::new(),
        }
    }

    /// Waits up to `within` for the utterances not yet taken by the stream
    /// (the ears are being put away).
    pub async fn settle(self, within: Duration) {
        self.outbox.settle(within).await;
    }

    /// Hears 16 kHz mono samples; `open` is the echo gate's state. Level
    /// frames are published best effort; every finished utterance is put on
    /// the work queue in the background.
    pub async fn hear(&mut self, pcm: &[i16], open: bool) -> Heard {
        let events = self.vad.push(pcm, open);
        if self.frames {
            self.frame_buf.extend_from_slice(pcm);
            let speech = self.vad.speaking();
            while self.frame_buf.len() >= FRAME_20MS {
                let frame: Vec<i16> = self.frame_buf.drain(..FRAME_20MS).collect();
                self.seq += 1;
                // The level only: what the visitor says (the samples) goes
                // to stt in utterances, never to whoever watches the meter.
                let f = AudioFrame {
                    session_id: self.sid.clone(),
                    seq: self.seq,
                    sample_rate: vad::RATE,
                    level: vad::level(&frame),
                    pcm: Vec::new(),
                    speech,
                };
                // Observers only: best effort, never in the way.
                let _ = self
                    .bus
                    .publish(subjects::audio(&self.pi, &self.sid), &f)
                    .await;
            }
        }
        let mut heard = Heard::default();
        for event in events {
            match event {
                vad::Event::Utterance {
                    pcm,
                    speech_start,
                    speech_end,
                    cut,
                    ended,
                    judge_ms,
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
                        turn_end: match ended {
                            vad::Ending::Silence => "silence",
                            vad::Ending::Judged { .. } => "model",
                            vad::Ending::Bound { .. } => "bound",
                            vad::Ending::Cut => "cut",
                        }
                        .into(),
                        turn_complete: match ended {
                            vad::Ending::Judged { p, .. } | vad::Ending::Bound { p: Some(p) } => p,
                            _ => -1.0,
                        },
                        end_silence_ms: ms_ago(speech_end).try_into().unwrap_or(u32::MAX),
                        turn_model_ms: judge_ms,
                    };
                    let ms = pcm.len() as u64 * 1000 / vad::RATE as u64;
                    tracing::info!(
                        session = %self.sid,
                        utterance = %u.utterance_id,
                        device = %self.device,
                        ms,
                        cut,
                        turn_end = %u.turn_end,
                        turn_complete = u.turn_complete,
                        end_silence_ms = u.end_silence_ms,
                        turn_model_ms = judge_ms,
                        "Heard an utterance."
                    );
                    heard.utterances.push(Sent {
                        utterance_id: u.utterance_id.clone(),
                        ms,
                    });
                    self.outbox.send(
                        subjects::utterance(&self.pi, &u.session_id),
                        &u,
                        &bus::ids::utterance(&u.utterance_id),
                    );
                }
                vad::Event::SpeechWhileGated { ms } => heard.speech_over_clip_ms = Some(ms),
            }
        }
        heard
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
}
