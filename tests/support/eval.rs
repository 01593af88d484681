//! The retrieval evaluation's libraries: the dialogue films of
//! `tests/eval/retrieval.toml` and the demo library, amid real text fetched
//! by `scripts/eval-corpus` (a screenplay, fortunes, WordNet's examples), cut
//! into subtitle lines, at a given total of lines. Made the same way every
//! time from the same corpus.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct EvalSet {
    #[serde(rename = "film")]
    pub films: Vec<EvalFilm>,
    #[serde(rename = "visitor")]
    pub visitors: Vec<Visitor>,
}

#[derive(Debug, Deserialize)]
pub struct EvalFilm {
    pub name: String,
    pub lines: Vec<String>,
}

/// A visitor's line and the film lines that answer it; none when nothing in
/// the library does.
#[derive(Debug, Deserialize)]
pub struct Visitor {
    pub says: String,
    pub answers: Vec<String>,
    /// Never used to fit the weights of `library::answer`: measured apart.
    #[serde(default)]
    pub held_out: bool,
}

impl EvalSet {
    pub fn load() -> EvalSet {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/retrieval.toml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every dialogue film: the demo library's and this set's.
    pub fn dialogue(&self) -> Vec<(String, Vec<String>)> {
        synth::DEMO_FILMS
            .iter()
            .map(|(stem, _, lines)| {
                (
                    stem.to_string(),
                    lines.iter().map(|l| l.to_string()).collect(),
                )
            })
            .chain(self.films.iter().map(|f| (f.name.clone(), f.lines.clone())))
            .collect()
    }
}

/// The corpus folder, fetched by `scripts/eval-corpus` when not yet cached.
pub fn corpus() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/eval-corpus");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    if !out.status.success() {
        panic!(
            "scripts/eval-corpus failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The screenplay as subtitle lines: split after each sentence, long ones
/// cut at a space (as a careless conversion would make them), in order.
fn screenplay_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
        let ends = word.ends_with(['.', '!', '?', ':']) || word.ends_with(".”");
        if ends || current.len() > 70 {
            lines.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// The fortunes, each as its own lines (wrapped text, attributions, lyrics,
/// dialogue), skipping ASCII art's blank lines.
fn fortune_lines(dir: &Path) -> Vec<Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    files.sort();
    let mut fortunes = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for fortune in text.split("\n%\n") {
            let lines: Vec<String> = fortune
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|l| l.chars().any(char::is_alphabetic))
                .collect();
            if !lines.is_empty() {
                fortunes.push(lines);
            }
        }
    }
    fortunes
}

/// A fixed shuffle (xorshift), so every run takes the same sample.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut x = seed.max(1);
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// Lines per noise film (a long film is a long blank video to make).
const FILM_LINES: usize = 400;

/// Writes the library of `total` lines into `dir` (subtitle files beside
/// hard links to one blank video) and returns how many lines are dialogue.
/// The screenplay comes first, then fortunes, then WordNet's examples, each
/// taken in a fixed shuffled order until the total is reached.
pub fn make_library(set: &EvalSet, corpus: &Path, total: usize, dir: &Path) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    let blank = dir.join(".blank.mp4");
    if !blank.exists() {
        synth::blank_film(&blank, (FILM_LINES as u32) * 8 + 60).unwrap();
    }
    let mut films: Vec<(String, Vec<String>)> = set.dialogue();
    let dialogue: usize = films.iter().map(|(_, l)| l.len()).sum();
    let mut left = total.saturating_sub(dialogue);

    let screenplay = std::fs::read_to_string(corpus.join("bee-movie.txt")).unwrap();
    let mut noise: Vec<Vec<String>> = vec![screenplay_lines(&screenplay)];
    let mut fortunes = fortune_lines(&corpus.join("fortunes"));
    shuffle(&mut fortunes, 7);
    noise.push(fortunes.into_iter().flatten().collect());
    let wordnet = std::fs::read_to_string(corpus.join("wordnet.txt")).unwrap();
    let mut examples: Vec<String> = wordnet.lines().map(|l| l.trim().to_string()).collect();
    shuffle(&mut examples, 11);
    noise.push(examples);
    for (source, lines) in ["bee-movie", "fortunes", "wordnet"].iter().zip(noise) {
        let take: Vec<String> = lines.into_iter().take(left).collect();
        left -= take.len();
        for (i, chunk) in take.chunks(FILM_LINES).enumerate() {
            films.push((format!("{source}-{i:03}"), chunk.to_vec()));
        }
    }
    assert_eq!(
        left, 0,
        "the corpus has fewer than {total} lines: ask for a smaller library"
    );

    for (stem, lines) in &films {
        let mut t = 1.0;
        let timed: Vec<synth::Line> = lines
            .iter()
            .map(|text| {
                let len = 1.0 + text.len().min(90) as f64 / 15.0;
                let line = synth::Line {
                    text: text.clone(),
                    start_s: t,
                    end_s: t + len,
                };
                t += len + 0.8;
                line
            })
            .collect();
        let srt = dir.join(format!("{stem}.srt"));
        let doc = synth::srt(&timed);
        if std::fs::read_to_string(&srt).ok().as_deref() != Some(doc.as_str()) {
            std::fs::write(&srt, doc).unwrap();
        }
        let video = dir.join(format!("{stem}.mp4"));
        if !video.exists() {
            std::fs::hard_link(&blank, &video).unwrap();
        }
    }
    dialogue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screenplays_are_cut_after_sentences_and_long_runs() {
        let lines = screenplay_lines("BARRY Hello? Is anyone there. ANGLE ON: Barry's hand.");
        assert_eq!(
            lines,
            [
                "BARRY Hello?",
                "Is anyone there.",
                "ANGLE ON:",
                "Barry's hand."
            ]
        );
    }
}
