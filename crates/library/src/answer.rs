//! Answer search's judgement: how likely a clip answers what a visitor said.
//!
//! A candidate clip is a line of a film; its cue is the line before it. The
//! evidence, each from 0 to 1:
//! - how like the visitor's line the cue is, in meaning (cosine of their
//!   embeddings) and word for word ([`lines::overlap`]);
//! - how the reply itself relates to the visitor's line, in meaning and in
//!   words: a reply that shares nothing with the line is weak evidence;
//! - the film's structure: a cue and reply close in time, said by two
//!   people (when the subtitles name speakers), are an exchange; far apart,
//!   or the same speaker going on, much less so;
//! - the conversation: a reply from the film the last clip came from, and
//!   better still the line right after it, is preferred to an equal one
//!   from elsewhere.
//!
//! They are weighed into one score (a logistic regression fitted on the
//! project's retrieval evaluation, `tests/eval/retrieval.toml`, `cargo bench
//! -p tests --bench retrieval`) and calibrated into the chance that the clip
//! is an acceptable answer. A director treats a best chance under 0.5
//! as "nothing fits" (llm's `min_fit`). Lines that are not speech
//! ([`lines::classify`]) are never answers, and clips whose cue is not
//! speech are not exchanges.

use wire::v1::Clip;

use crate::lines::{self, LineKind};

/// What the library keeps of each clip for answer search.
#[derive(Debug, Clone)]
pub struct LineInfo {
    pub kind: LineKind,
    /// The words of the line said (no label, no direction).
    pub words: Vec<String>,
    /// The cue, as said, for the lexical index (empty when there is none or
    /// it is not speech).
    pub cue_said: String,
    pub cue_words: Vec<String>,
    /// Whether this clip may answer: its line is speech and its cue is too.
    pub answerable: bool,
    /// Seconds between the cue's end and this line's start (clip bounds).
    pub gap_s: f32,
    /// The cue and this line are labelled with the same speaker.
    pub same_speaker: bool,
}

/// Reads every clip's line and cue; marks clips whose line is not speech
/// (`Clip.not_speech`). `clips` are in library order (a film's lines in
/// order, one after another).
pub fn annotate(clips: &mut [Clip]) -> Vec<LineInfo> {
    let said: Vec<(LineKind, String, Option<String>)> = clips
        .iter()
        .map(|c| {
            let kind = lines::classify(&c.caption);
            let (text, speaker) = lines::spoken(&c.caption);
            (kind, text, speaker)
        })
        .collect();
    let mut out = Vec::with_capacity(clips.len());
    for i in 0..clips.len() {
        let c = &clips[i];
        let (kind, text, speaker) = &said[i];
        // The cue is the previous clip's line when that clip is its line.
        let prev = i
            .checked_sub(1)
            .filter(|&p| clips[p].film_id == c.film_id && clips[p].caption == c.cue);
        let (cue_kind, cue_said, cue_speaker, gap_s) = match prev {
            Some(p) => (
                said[p].0,
                said[p].1.clone(),
                said[p].2.clone(),
                (c.start_s - clips[p].end_s).max(0.0) as f32,
            ),
            None if !c.cue.trim().is_empty() => {
                let (t, s) = lines::spoken(&c.cue);
                (lines::classify(&c.cue), t, s, 0.0)
            }
            None => (LineKind::Direction, String::new(), None, 0.0),
        };
        let cue_ok = cue_kind == LineKind::Speech && !cue_said.is_empty();
        out.push(LineInfo {
            kind: *kind,
            words: lines::words(text),
            cue_words: if cue_ok {
                lines::words(&cue_said)
            } else {
                Vec::new()
            },
            cue_said: if cue_ok { cue_said } else { String::new() },
            answerable: *kind == LineKind::Speech && cue_ok,
            gap_s,
            same_speaker: speaker.is_some() && *speaker == cue_speaker,
        });
    }
    for (c, info) in clips.iter_mut().zip(&out) {
        c.not_speech = info.kind.as_str().to_string();
    }
    out
}

/// The evidence about one candidate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evidence {
    /// Cosines with the visitor's line; `None` without the embedding model.
    pub cue_meaning: Option<f32>,
    pub reply_meaning: Option<f32>,
    pub cue_words: f32,
    pub reply_words: f32,
    pub gap_s: f32,
    pub same_speaker: bool,
    /// From the film of the clip played just before.
    pub same_film: bool,
    /// The line right after the clip played just before.
    pub follows_previous: bool,
    /// The visitor asked, and the reply asks back.
    pub question_for_question: bool,
}

/// Seconds between a cue and its reply beyond which they are less likely
/// one exchange.
const LONG_GAP_S: f32 = 5.0;

/// Logistic regression of "this candidate is an acceptable answer" on the
/// evidence, fitted on the retrieval evaluation's candidates (top 20 of each
/// visitor line, libraries of 1,000, 10,000 and 100,000 lines): bias, cue
/// meaning, cue words, reply meaning, reply words, cue × reply meaning.
const WEIGHTS: [f32; 6] = [-6.79, 4.81, 2.08, 2.55, -0.11, 2.73];

/// A question answered with a question (fitted with [`WEIGHTS`]).
const QUESTION_FOR_QUESTION: f32 = -1.25;

/// Without the embedding model: words alone (set by hand; the evaluation
/// runs hybrid).
const WORDS_ONLY: [f32; 3] = [-4.0, 4.5, 1.0];

/// Structure and conversation, in the same units (set by hand: the
/// evaluation's films have no long gaps, no speaker labels, no history).
const LONG_GAP: f32 = -0.5;
const SAME_SPEAKER: f32 = -0.7;
const SAME_FILM: f32 = 0.5;
const FOLLOWS_PREVIOUS: f32 = 0.5;

/// The chance that the best candidate of a search is acceptable, from its
/// weight: a logistic curve fitted on the evaluation's best candidates
/// (whether each was an acceptable answer).
const CALIBRATION: (f32, f32) = (1.378, 3.265);

impl Evidence {
    /// The weighed evidence (log-odds, before calibration).
    pub fn weight(&self) -> f32 {
        let mut w = match (self.cue_meaning, self.reply_meaning) {
            (Some(cue), Some(reply)) => {
                let [b, cm, cw, rm, rw, both] = WEIGHTS;
                b + cm * cue
                    + cw * self.cue_words
                    + rm * reply
                    + rw * self.reply_words
                    + both * cue * reply
            }
            _ => {
                let [b, cw, rw] = WORDS_ONLY;
                b + cw * self.cue_words + rw * self.reply_words
            }
        };
        if self.gap_s > LONG_GAP_S {
            w += LONG_GAP;
        }
        if self.same_speaker {
            w += SAME_SPEAKER;
        }
        if self.same_film {
            w += SAME_FILM;
        }
        if self.follows_previous {
            w += FOLLOWS_PREVIOUS;
        }
        if self.question_for_question {
            w += QUESTION_FOR_QUESTION;
        }
        w
    }

    /// The chance, 0 to 1, that the clip answers acceptably.
    pub fn calibrated(&self) -> f32 {
        let (a, b) = CALIBRATION;
        1.0 / (1.0 + (-(a * self.weight() + b)).exp())
    }

    /// Why it matched, in words, for people and models.
    pub fn reason(&self) -> String {
        let mut parts = Vec::new();
        match self.cue_meaning {
            Some(m) => parts.push(format!(
                "its cue is {:.0}% like the line in meaning, {:.0}% in words",
                m.max(0.0) * 100.0,
                self.cue_words * 100.0
            )),
            None => parts.push(format!(
                "its cue shares {:.0}% of the line's words",
                self.cue_words * 100.0
            )),
        }
        match self.reply_meaning {
            Some(r) => parts.push(format!(
                "the reply relates {:.0}% to the line in meaning, {:.0}% in words",
                r.max(0.0) * 100.0,
                self.reply_words * 100.0
            )),
            None => parts.push(format!(
                "the reply shares {:.0}% of its words",
                self.reply_words * 100.0
            )),
        }
        if self.gap_s > LONG_GAP_S {
            parts.push(format!("{:.0} s after its cue", self.gap_s));
        }
        if self.same_speaker {
            parts.push("the same speaker goes on".into());
        }
        if self.question_for_question {
            parts.push("a question answered with a question".into());
        }
        if self.follows_previous {
            parts.push("it follows the clip just played".into());
        } else if self.same_film {
            parts.push("from the film just played".into());
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(film: &str, i: u32, caption: &str, cue: &str, start: f64) -> Clip {
        Clip {
            id: format!("{film}-{i}"),
            film_id: film.into(),
            caption: caption.into(),
            cue: cue.into(),
            line_index: i,
            start_s: start,
            end_s: start + 1.5,
            ..Default::default()
        }
    }

    #[test]
    fn clips_whose_line_or_cue_is_not_speech_do_not_answer() {
        let mut clips = vec![
            clip("f", 0, "ANGLE ON: the hive.", "", 0.0),
            clip("f", 1, "BARRY Who are you?", "ANGLE ON: the hive.", 2.0),
            clip("f", 2, "JANET I'm your mother.", "BARRY Who are you?", 4.0),
            clip("f", 3, "[door slams]", "JANET I'm your mother.", 6.0),
            clip("f", 4, "JANET and stop that.", "[door slams]", 30.0),
        ];
        let info = annotate(&mut clips);
        let answerable: Vec<bool> = info.iter().map(|i| i.answerable).collect();
        assert_eq!(answerable, [false, false, true, false, false]);
        assert_eq!(info[2].cue_said, "Who are you?");
        assert!(!info[2].same_speaker);
        assert_eq!(clips[0].not_speech, "direction");
        assert_eq!(clips[2].not_speech, "");
        assert_eq!(clips[3].not_speech, "direction");
        assert_eq!(clips[4].not_speech, "fragment");
        assert!(info[4].gap_s > 20.0);
    }

    #[test]
    fn the_chance_grows_with_the_evidence() {
        let strong = Evidence {
            cue_meaning: Some(0.85),
            reply_meaning: Some(0.4),
            cue_words: 0.7,
            ..Default::default()
        };
        let weak = Evidence {
            cue_meaning: Some(0.35),
            reply_meaning: Some(0.05),
            cue_words: 0.1,
            ..Default::default()
        };
        assert!(strong.calibrated() > 0.8, "{}", strong.calibrated());
        assert!(weak.calibrated() < 0.2, "{}", weak.calibrated());
        let far = Evidence {
            gap_s: 30.0,
            same_speaker: true,
            ..strong
        };
        assert!(far.calibrated() < strong.calibrated());
        let near = Evidence {
            same_film: true,
            follows_previous: true,
            ..strong
        };
        assert!(near.calibrated() > strong.calibrated());
        assert!(strong.reason().contains("85% like the line in meaning"));
    }
}
