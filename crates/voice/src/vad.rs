//! Voice activity detection and endpointing: 16 kHz mono samples in, cut
//! utterances out. The detector (earshot in the service) scores 16 ms frames;
//! the endpointer turns scores into utterances with pre-roll, an end-of-turn
//! silence, a minimum speech length and a maximum utterance length, and
//! drops everything heard while the gate is closed (the TV is talking).

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
}

impl Default for Params {
    fn default() -> Self {
        Params {
            threshold: 0.5,
            end_silence_ms: 250,
            min_speech_ms: 250,
            max_utterance_ms: 15_000,
            pre_roll_ms: 300,
            start_frames: 2,
        }
    }
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
    },
    /// Speech heard while the gate was closed (for barge-in).
    SpeechWhileGated { ms: u32 },
}

pub struct Endpointer<D: FnMut(&[i16]) -> f32> {
    detect: D,
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
}

impl<D: FnMut(&[i16]) -> f32> Endpointer<D> {
    pub fn new(detect: D, p: Params) -> Self {
        Endpointer {
            detect,
            p,
            pending: Vec::new(),
            clock: 0,
            pre_roll: VecDeque::new(),
            speech: None,
            run: 0,
            gated_speech_frames: 0,
        }
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
                } else {
                    s.silent_frames += 1;
                }
                let len_ms = s.pcm.len() as u64 * 1000 / RATE as u64;
                if s.silent_frames * FRAME_MS >= self.p.end_silence_ms {
                    let s = self.speech.take()?;
                    return self.finish(s, false);
                }
                if len_ms >= self.p.max_utterance_ms as u64 {
                    let s = self.speech.take()?;
                    // The speech goes on: the next part starts at once.
                    self.speech = Some(Speech {
                        pcm: Vec::new(),
                        start: self.clock,
                        voiced_frames: 0,
                        silent_frames: 0,
                    });
                    return self.finish(s, true);
                }
                None
            }
        }
    }

    fn finish(&mut self, s: Speech, cut: bool) -> Option<Event> {
        if s.voiced_frames * FRAME_MS < self.p.min_speech_ms {
            return None;
        }
        let end = self.clock - (s.silent_frames as u64 * FRAME as u64);
        Some(Event::Utterance {
            pcm: s.pcm,
            speech_start: s.start,
            speech_end: end,
            cut,
        })
    }
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
