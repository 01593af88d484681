//! Large subtitle-only libraries for benchmarks: deterministic English-like
//! lines in `.srt` files beside empty stand-in video files (ingest reads the
//! subtitles; nothing decodes the video).

use std::fmt::Write as _;
use std::path::Path;

use crate::{Error, Line, srt};

const WORDS: &[&str] = &[
    "the",
    "a",
    "you",
    "I",
    "we",
    "they",
    "it",
    "is",
    "are",
    "was",
    "be",
    "have",
    "do",
    "say",
    "go",
    "get",
    "make",
    "know",
    "think",
    "take",
    "see",
    "come",
    "want",
    "look",
    "use",
    "find",
    "give",
    "tell",
    "work",
    "call",
    "try",
    "ask",
    "need",
    "feel",
    "leave",
    "put",
    "mean",
    "keep",
    "let",
    "begin",
    "seem",
    "help",
    "talk",
    "turn",
    "start",
    "show",
    "hear",
    "play",
    "run",
    "move",
    "live",
    "believe",
    "bring",
    "happen",
    "write",
    "sit",
    "stand",
    "lose",
    "pay",
    "meet",
    "time",
    "year",
    "people",
    "way",
    "day",
    "man",
    "woman",
    "child",
    "world",
    "life",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "house",
    "night",
    "home",
    "room",
    "mother",
    "father",
    "friend",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "door",
    "train",
    "station",
    "sea",
    "river",
    "city",
    "light",
    "storm",
    "summer",
    "winter",
    "movie",
    "truth",
    "dream",
    "heart",
    "love",
    "war",
    "car",
    "road",
    "good",
    "new",
    "first",
    "last",
    "long",
    "great",
    "little",
    "own",
    "other",
    "old",
    "big",
    "high",
    "different",
    "small",
    "large",
    "next",
    "early",
    "young",
    "important",
    "few",
    "bad",
    "same",
    "able",
    "dark",
    "happy",
    "sad",
    "afraid",
    "tonight",
    "tomorrow",
    "never",
    "always",
    "maybe",
    "please",
    "thank",
    "sorry",
    "hello",
    "goodbye",
    "why",
    "where",
    "when",
    "what",
    "who",
    "how",
    "here",
    "there",
    "now",
    "then",
    "again",
    "together",
    "alone",
    "back",
    "away",
    "home",
];

/// A small deterministic generator (xorshift64*), so every run makes the
/// same library.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One generated line of 3–11 words.
fn sentence(rng: &mut Rng) -> String {
    let n = 3 + rng.below(9);
    let mut s = String::new();
    for i in 0..n {
        let w = WORDS[rng.below(WORDS.len())];
        if i == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                s.extend(f.to_uppercase());
                s.push_str(c.as_str());
            }
        } else {
            let _ = write!(s, " {w}");
        }
    }
    s.push(if rng.below(4) == 0 { '?' } else { '.' });
    s
}

/// Writes `films` films of `lines_per_film` lines each (`film-00000.srt` +
/// `film-00000.mp4`, a hard link to one blank film long enough for the
/// lines). Returns every line, film by film.
pub fn subtitle_library(
    dir: &Path,
    films: usize,
    lines_per_film: usize,
    seed: u64,
) -> Result<Vec<String>, Error> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng(seed.max(1));
    let mut all = Vec::with_capacity(films * lines_per_film);
    let blank = dir.join(".blank.mp4");
    // Lines average under 5 s with their gaps.
    crate::blank_film(&blank, (lines_per_film as u32).saturating_mul(6).max(60))?;
    for f in 0..films {
        let mut t = 1.0;
        let mut lines = Vec::with_capacity(lines_per_film);
        for _ in 0..lines_per_film {
            let text = sentence(&mut rng);
            let len = 1.0 + text.len() as f64 / 15.0;
            lines.push(Line {
                text: text.clone(),
                start_s: t,
                end_s: t + len,
            });
            t += len + 0.8;
            all.push(text);
        }
        std::fs::write(dir.join(format!("film-{f:05}.srt")), srt(&lines))?;
        let video = dir.join(format!("film-{f:05}.mp4"));
        let _ = std::fs::remove_file(&video);
        std::fs::hard_link(&blank, &video)?;
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_well_formed() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let la = subtitle_library(a.path(), 2, 5, 7).unwrap();
        let lb = subtitle_library(b.path(), 2, 5, 7).unwrap();
        assert_eq!(la, lb);
        assert_eq!(la.len(), 10);
        assert!(la.iter().all(|l| l.ends_with('.') || l.ends_with('?')));
        let doc = std::fs::read_to_string(a.path().join("film-00001.srt")).unwrap();
        assert!(doc.starts_with("1\n00:00:01,000 --> "));
    }
}
