//! Voice activity detection and endpointing: 16 kHz mono samples in, cut
//! utterances out. The detector (earshot in the service) scores 16 ms frames;
//! the endpointer turns scores into utterances with pre-roll, an end of
//! turn, a minimum speech length and a maximum utterance length, and drops
//! everything heard while the gate is closed (the TV is talking).
//!
//! The end of a turn is decided one of two ways ([`TurnMode`]): by silence
//! alone (`end_silence_ms`), or by a judge — the turn model
//! ([`crate::turn`]) — asked at every pause: after `pause_ms` of silence,
//! and again every `recheck_ms` while it lasts, it says how likely the turn
//! is complete; at `complete_threshold` or above the turn ends at once,
//! below it the endpointer waits on, up to `max_silence_ms`. A judge that
//! fails is taken as "don't know": the silence bound decides.

use std::collections::VecDeque;

pub const RATE: u32 = 16_000;
/// Samples per detector frame (16 ms at 16 kHz), as earshot needs.
pub const FRAME: usize = 256;
const FRAME_MS: u32 = 16;

#[derive(Debug, Clone)]
pub struct Params {
    /// A frame scoring at or above this is speech.
    pub threshold: f32,
    /// Silence that ends a turn.
    pub end_silence_ms: u32,
    /// Shorter speech is a cough, a click: dropped.
    pub min_speech_ms: u32,
    /// Longer speech is cut and sent in parts.
    pub max_utterance_ms: u32,
    /// Audio kept from before speech was detected, so the first syllable is kept.
    pub pre_roll_ms: u32,
    /// Speech frames in a row that start an utterance (debounce).
    pub start_frames: u32,
    /// How the end of a turn is decided.
    pub turn: TurnParams,
}

/// How the end of a turn is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnMode {
    /// `end_silence_ms` of silence ends the turn, whatever was said.
    Silence,
    /// The judge decides at each pause, within `max_silence_ms`.
    Model,
}

impl std::str::FromStr for TurnMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "silence" => Ok(TurnMode::Silence),
            "model" => Ok(TurnMode::Model),
            other => Err(format!("must be `model` or `silence`, got {other:?}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TurnParams {
    pub mode: TurnMode,
    /// Silence after which the judge is first asked.
    pub pause_ms: u32,
    /// Asked again every this long while the silence lasts.
    pub recheck_ms: u32,
    /// A judged probability at or above this ends the turn.
    pub complete_threshold: f32,
    /// Silence this long ends the turn whatever the judge says.
    pub max_silence_ms: u32,
}

impl Default for TurnParams {
    fn default() -> Self {
        TurnParams {
            mode: TurnMode::Model,
            pause_ms: 200,
            recheck_ms: 200,
            complete_threshold: 0.8,
            max_silence_ms: 1500,
        }
    }
}

impl TurnParams {
    /// What is wrong with these settings, if anything.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.complete_threshold) {
            return Err("turn_complete_threshold must be within 0–1".into());
        }
        if self.pause_ms == 0 || self.recheck_ms == 0 {
            return Err("turn_pause_ms and turn_recheck_ms must be above 0".into());
        }
        if self.max_silence_ms < self.pause_ms {
            return Err("turn_max_silence_ms must be at least turn_pause_ms".into());
        }
        Ok(())
    }
}

/// Says how likely a turn is complete (0–1) from all of it heard so far
/// (16 kHz, ending now); `None`: it cannot tell (the silence bound decides).
pub type Judge = Box<dyn FnMut(&[i16]) -> Option<f32> + Send>;

impl Default for Params {
    fn default() -> Self {
        Params {
            threshold: 0.5,
            end_silence_ms: 250,
            min_speech_ms: 250,
            max_utterance_ms: 15_000,
            pre_roll_ms: 300,
            start_frames: 2,
            turn: TurnParams::default(),
        }
    }
}

/// How an utterance's end was decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ending {
    /// `end_silence_ms` of silence (silence mode, or no judge).
    Silence,
    /// The judge said complete with this probability, after this much silence.
    Judged { p: f32, silence_ms: u32 },
    /// The judge never said complete; `max_silence_ms` ended it (the last
    /// probability, if any).
    Bound { p: Option<f32> },
    /// Cut at the maximum length.
    Cut,
}

/// What the endpointer found.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A finished (or cut) utterance. Times are sample offsets from the
    /// start of the stream, at 16 kHz.
    Utterance {
        pcm: Vec<i16>,
        speech_start: u64,
        speech_end: u64,
        /// Cut at the maximum length; more of the same speech follows.
        cut: bool,
        /// How the end was decided.
        ended: Ending,
        /// The judge's time for its last decision (0: not asked).
        judge_ms: u32,
    },
    /// Speech heard while the gate was closed (for barge-in).
    SpeechWhileGated { ms: u32 },
}

pub struct Endpointer<D: FnMut(&[i16]) -> f32> {
    detect: D,
    judge: Option<Judge>,
    p: Params,
    pending: Vec<i16>,
    /// Samples consumed so far (the stream clock).
    clock: u64,
    pre_roll: VecDeque<i16>,
    speech: Option<Speech>,
    run: u32,
    gated_speech_frames: u32,
}

struct Speech {
    pcm: Vec<i16>,
    start: u64,
    voiced_frames: u32,
    silent_frames: u32,
    /// The judge's last word in this pause, and when (in silent frames) it
    /// is next asked.
    judged: Option<f32>,
    next_check: u32,
    /// How long the judge took last.
    judge_ms: u32,
}

impl<D: FnMut(&[i16]) -> f32> Endpointer<D> {
    pub fn new(detect: D, p: Params) -> Self {
        Endpointer {
            detect,
            judge: None,
            p,
            pending: Vec::new(),
            clock: 0,
            pre_roll: VecDeque::new(),
            speech: None,
            run: 0,
            gated_speech_frames: 0,
        }
    }

    /// Lets `judge` decide the end of turns (in [`TurnMode::Model`]).
    pub fn with_judge(mut self, judge: Judge) -> Self {
        self.judge = Some(judge);
        self
    }

    /// Whether an utterance is open and its last frame was speech (the
    /// visitor is speaking now).
    pub fn speaking(&self) -> bool {
        self.speech.as_ref().is_some_and(|s| s.silent_frames == 0)
    }

    /// The stream clock in samples.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Feeds samples; `open` is false while the gate is closed (a clip is
    /// playing, or its tail). Returns what ended in them.
    pub fn push(&mut self, samples: &[i16], open: bool) -> Vec<Event> {
        self.pending.extend_from_slice(samples);
        let mut out = Vec::new();
        let mut at = 0;
        while self.pending.len() - at >= FRAME {
            let frame: Vec<i16> = self.pending[at..at + FRAME].to_vec();
            at += FRAME;
            if let Some(e) = self.frame(&frame, open) {
                out.push(e);
            }
        }
        self.pending.drain(..at);
        out
    }

    fn frame(&mut self, frame: &[i16], open: bool) -> Option<Event> {
        let voiced = (self.detect)(frame) >= self.p.threshold;
        self.clock += FRAME as u64;
        if !open {
            // Nothing heard now may become an utterance: the TV's voice
            // must never be taken for the visitor's.
            self.speech = None;
            self.pre_roll.clear();
            self.run = 0;
            if voiced {
                self.gated_speech_frames += 1;
                return Some(Event::SpeechWhileGated {
                    ms: self.gated_speech_frames * FRAME_MS,
                });
            }
            self.gated_speech_frames = 0;
            return None;
        }
        self.gated_speech_frames = 0;
        match self.speech.as_mut() {
            None => {
                self.pre_roll.extend(frame.iter().copied());
                let keep = (self.p.pre_roll_ms * RATE / 1000) as usize + FRAME;
                while self.pre_roll.len() > keep {
                    self.pre_roll.pop_front();
                }
                self.run = if voiced { self.run + 1 } else { 0 };
                if self.run >= self.p.start_frames.max(1) {
                    let pcm: Vec<i16> = self.pre_roll.drain(..).collect();
                    let start = self.clock - (self.run as u64 * FRAME as u64);
                    self.speech = Some(Speech {
                        pcm,
                        start,
                        voiced_frames: self.run,
                        silent_frames: 0,
                        judged: None,
                        next_check: 0,
                        judge_ms: 0,
                    });
                    self.run = 0;
                }
                None
            }
            Some(s) => {
                s.pcm.extend_from_slice(frame);
                if voiced {
                    s.voiced_frames += 1;
                    s.silent_frames = 0;
                    s.judged = None;
                } else {
                    s.silent_frames += 1;
                }
                let len_ms = s.pcm.len() as u64 * 1000 / RATE as u64;
                let silence_ms = s.silent_frames * FRAME_MS;
                let t = &self.p.turn;
                let judge = self.judge.as_mut().filter(|_| t.mode == TurnMode::Model);
                let ended = match judge {
                    None => (silence_ms >= self.p.end_silence_ms).then_some(Ending::Silence),
                    Some(judge) => {
                        let (pause, recheck) = (frames(t.pause_ms), frames(t.recheck_ms));
                        if s.silent_frames == pause {
                            s.next_check = pause;
                        }
                        let mut ended = None;
                        if s.silent_frames >= pause && s.silent_frames == s.next_check {
                            s.next_check += recheck;
                            let asked = std::time::Instant::now();
                            s.judged = judge(&s.pcm);
                            s.judge_ms = asked.elapsed().as_millis().try_into().unwrap_or(u32::MAX);
                            if let Some(p) = s.judged.filter(|&p| p >= t.complete_threshold) {
                                ended = Some(Ending::Judged { p, silence_ms });
                            }
                        }
                        if ended.is_none() && silence_ms >= t.max_silence_ms {
                            ended = Some(Ending::Bound { p: s.judged });
                        }
                        ended
                    }
                };
                if let Some(ended) = ended {
                    let s = self.speech.take()?;
                    return self.finish(s, ended);
                }
                if len_ms >= self.p.max_utterance_ms as u64 {
                    let s = self.speech.take()?;
                    // The speech goes on: the next part starts at once.
                    self.speech = Some(Speech {
                        pcm: Vec::new(),
                        start: self.clock,
                        voiced_frames: 0,
                        silent_frames: 0,
                        judged: None,
                        next_check: 0,
                        judge_ms: 0,
                    });
                    return self.finish(s, Ending::Cut);
                }
                None
            }
        }
    }

    fn finish(&mut self, s: Speech, ended: Ending) -> Option<Event> {
        if s.voiced_frames * FRAME_MS < self.p.min_speech_ms {
            return None;
        }
        let end = self.clock - (s.silent_frames as u64 * FRAME as u64);
        Some(Event::Utterance {
            pcm: s.pcm,
            speech_start: s.start,
            speech_end: end,
            cut: ended == Ending::Cut,
            ended,
            judge_ms: s.judge_ms,
        })
    }
}

/// Detector frames in `ms` (at least one).
fn frames(ms: u32) -> u32 {
    ms.div_ceil(FRAME_MS).max(1)
}

/// Loudness of a frame, 0 (silence) to 1 (full scale), on a dB scale from
/// -60 dBFS so speech reads as a useful meter.
pub fn level(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum();
    let rms = (sum / samples.len() as f64).sqrt();
    let db = 20.0 * rms.max(1e-9).log10();
    ((db + 60.0) / 60.0).clamp(0.0, 1.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in detector for the state machine: loud frames are speech.
    fn loud(frame: &[i16]) -> f32 {
        if frame.iter().any(|s| s.abs() > 1000) {
            1.0
        } else {
            0.0
        }
    }

    fn tone(ms: u32) -> Vec<i16> {
        (0..ms * 16)
            .map(|i| if i % 2 == 0 { 5000 } else { -5000 })
            .collect()
    }

    fn silence(ms: u32) -> Vec<i16> {
        vec![0; (ms * 16) as usize]
    }

    fn utterances(events: &[Event]) -> Vec<(usize, u64, u64, bool)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Utterance {
                    pcm,
                    speech_start,
                    speech_end,
                    cut,
                    ..
                } => Some((pcm.len(), *speech_start, *speech_end, *cut)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_turn_ends_after_the_configured_silence_with_pre_roll() {
        let mut ep = Endpointer::new(loud, Params::default());
        let mut ev = ep.push(&silence(1000), true);
        ev.extend(ep.push(&tone(800), true));
        assert!(utterances(&ev).is_empty(), "still speaking");
        ev.extend(ep.push(&silence(250), true));
        assert!(utterances(&ev).is_empty(), "250 ms of silence is a pause");
        ev.extend(ep.push(&silence(100), true));
        let u = utterances(&ev);
        assert_eq!(u.len(), 1, "{u:?}");
        let (len, start, end, cut) = u[0];
        assert!(!cut);
        // Speech began at 1.0 s and ended at 1.8 s (to a frame).
        assert!((start as i64 - 16_000).abs() <= 256, "start {start}");
        assert!((end as i64 - 28_800).abs() <= 256, "end {end}");
        // Pre-roll (300 ms) + speech + the silence that ended it.
        assert!(len >= (0.3 + 0.8 + 0.3) as usize * 16_000, "len {len}");
        assert!(len as f64 <= (0.35 + 0.8 + 0.35) * 16_000.0, "len {len}");
    }

    #[test]
    fn short_noises_are_dropped_and_long_speech_is_cut_in_parts() {
        let mut ep = Endpointer::new(loud, Params::default());
        let ev = ep.push(&[tone(100), silence(600)].concat(), true);
        assert!(utterances(&ev).is_empty(), "100 ms is not speech");

        let p = Params {
            max_utterance_ms: 2000,
            ..Params::default()
        };
        let mut ep = Endpointer::new(loud, p);
        let ev = ep.push(&[tone(5000), silence(500)].concat(), true);
        let u = utterances(&ev);
        assert_eq!(u.len(), 3, "{u:?}");
        assert!(u[0].3 && u[1].3 && !u[2].3, "two cuts, then the end: {u:?}");
        let total: usize = u.iter().map(|x| x.0).sum();
        assert!(total >= 5 * 16_000, "no speech lost across the cuts");
    }

    #[test]
    fn nothing_heard_while_gated_becomes_an_utterance() {
        let mut ep = Endpointer::new(loud, Params::default());
        let mut ev = ep.push(&tone(1000), false);
        ev.extend(ep.push(&silence(500), true));
        assert!(utterances(&ev).is_empty(), "{ev:?}");
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::SpeechWhileGated { ms } if *ms >= 900))
        );
        // Speech that began before the gate closed is dropped too.
        let mut ev = ep.push(&tone(500), true);
        ev.extend(ep.push(&tone(500), false));
        ev.extend(ep.push(&silence(500), true));
        assert!(utterances(&ev).is_empty(), "{ev:?}");
        // Once open, the visitor is heard again.
        let ev = ep.push(&[tone(600), silence(400)].concat(), true);
        assert_eq!(utterances(&ev).len(), 1);
    }

    #[test]
    fn levels_follow_loudness() {
        assert_eq!(level(&silence(20)), 0.0);
        assert!(level(&tone(20)) > 0.7, "{}", level(&tone(20)));
        let quiet: Vec<i16> = tone(20).iter().map(|s| s / 10).collect();
        assert!(level(&quiet) > 0.1 && level(&quiet) < level(&tone(20)));
        assert_eq!(level(&[]), 0.0);
    }
}
