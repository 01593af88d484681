//! Spoken turns for turn-taking: espeak-ng in several voices and speeds,
//! the parts of a turn put together with the pauses a visitor makes inside
//! it (between two sentences, after a filler, after a first word), and
//! single complete questions. `set()` is the fixed set the tests use;
//! `generated(n)` a larger one for the benchmark.

use std::path::{Path, PathBuf};

/// One visitor turn.
#[derive(Debug, Clone)]
pub struct SpokenTurn {
    /// What kind of turn (for reports): `two sentences`, `filler`,
    /// `first word`, `complete`.
    pub kind: &'static str,
    pub parts: Vec<String>,
    /// The pause after each part but the last.
    pub pauses_ms: Vec<u32>,
    pub voice: &'static str,
    pub speed: u32,
}

impl SpokenTurn {
    /// The whole line as the visitor means it.
    pub fn text(&self) -> String {
        self.parts.join(" ")
    }

    /// Whether it is said without a pause.
    pub fn complete(&self) -> bool {
        self.parts.len() == 1
    }

    /// The turn at 16 kHz: `lead_ms` of silence, the parts with their
    /// pauses, `trail_ms` of silence. Also where the speech ends (samples).
    pub fn pcm(&self, lead_ms: u32, trail_ms: u32) -> (Vec<i16>, usize) {
        let ms = |n: u32| vec![0i16; n as usize * 16];
        let mut pcm = ms(lead_ms);
        for (i, part) in self.parts.iter().enumerate() {
            let spoken = synth::speak_16k(part, self.voice, self.speed).unwrap();
            pcm.extend_from_slice(synth::trim_silence(&spoken));
            if let Some(&p) = self.pauses_ms.get(i) {
                pcm.extend(ms(p));
            }
        }
        let end = pcm.len();
        pcm.extend(ms(trail_ms));
        (pcm, end)
    }

    /// [`SpokenTurn::pcm`] as a WAV file in `dir`.
    pub fn wav(&self, dir: &Path, name: &str, lead_ms: u32, trail_ms: u32) -> PathBuf {
        let (pcm, _) = self.pcm(lead_ms, trail_ms);
        let path = dir.join(format!("{name}.wav"));
        synth::write_wav(&path, &pcm, 16_000).unwrap();
        path
    }
}

fn turn(
    kind: &'static str,
    parts: &[&str],
    pauses_ms: &[u32],
    voice: &'static str,
    speed: u32,
) -> SpokenTurn {
    SpokenTurn {
        kind,
        parts: parts.iter().map(|p| p.to_string()).collect(),
        pauses_ms: pauses_ms.to_vec(),
        voice,
        speed,
    }
}

/// The fixed set: each kind of paused turn, 0.4–0.9 s pauses, four voices
/// and three speeds, and single complete questions.
pub fn set() -> Vec<SpokenTurn> {
    vec![
        turn(
            "two sentences",
            &[
                "Hello television.",
                "Please tell me a story about the ocean.",
            ],
            &[490],
            "en-us",
            160,
        ),
        turn(
            "two sentences",
            &["I saw a film last week.", "Do you know which one?"],
            &[700],
            "en-gb",
            140,
        ),
        turn(
            "two sentences",
            &["It is cold tonight.", "Where can I find a warm coat?"],
            &[900],
            "en-us+f3",
            175,
        ),
        turn("filler", &["Um.", "What time is it?"], &[600], "en-us", 150),
        turn("filler", &["So.", "Who are you?"], &[500], "en-us+m3", 150),
        turn(
            "first word",
            &["Tell me about", "the ocean."],
            &[600],
            "en-gb",
            150,
        ),
        turn(
            "first word",
            &["I want to", "see the sea."],
            &[450],
            "en-us+f3",
            160,
        ),
        turn(
            "complete",
            &["What is the meaning of life?"],
            &[],
            "en-us",
            160,
        ),
        turn("complete", &["Can you hear me?"], &[], "en-us", 180),
        turn(
            "complete",
            &["Where did you go last night?"],
            &[],
            "en-gb",
            140,
        ),
        turn("complete", &["Are you a robot?"], &[], "en-us+m3", 150),
    ]
}

/// `n` turns made from sentence pools, voices, speeds and pauses (a fixed
/// sequence: the same `n` gives the same turns).
pub fn generated(n: usize) -> Vec<SpokenTurn> {
    const FIRST: &[&str] = &[
        "Hello there.",
        "I had a strange day.",
        "My name is Sam.",
        "It is raining again.",
        "I just came in.",
        "This place is beautiful.",
        "I like old movies.",
        "Good evening.",
    ];
    const QUESTIONS: &[&str] = &[
        "What should I do tonight?",
        "Can you tell me a secret?",
        "Where is the nearest station?",
        "Who is your favourite actor?",
        "Why is the sky blue?",
        "How do I get home from here?",
        "Do you believe in ghosts?",
        "What is your name?",
    ];
    const FILLERS: &[&str] = &["Um.", "So.", "Well.", "Uh."];
    const OPENINGS: &[(&str, &str)] = &[
        ("Tell me about", "your favourite film."),
        ("I want to", "go to the beach."),
        ("Can you", "play something funny?"),
        ("Where is", "the way out?"),
    ];
    const VOICES: &[&str] = &["en-us", "en-gb", "en-us+f3", "en-us+m3", "en-gb+f2"];
    const SPEEDS: &[u32] = &[130, 150, 170, 190];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let voice = VOICES[i % VOICES.len()];
        let speed = SPEEDS[(i / 2) % SPEEDS.len()];
        let pause = 400 + ((i * 137) % 6) as u32 * 100; // 0.4–0.9 s
        let q = QUESTIONS[(i * 3) % QUESTIONS.len()];
        out.push(match i % 4 {
            0 => turn(
                "two sentences",
                &[FIRST[(i / 4) % FIRST.len()], q],
                &[pause],
                voice,
                speed,
            ),
            1 => turn(
                "filler",
                &[FILLERS[(i / 4) % FILLERS.len()], q],
                &[pause],
                voice,
                speed,
            ),
            2 => {
                let (a, b) = OPENINGS[(i / 4) % OPENINGS.len()];
                turn("first word", &[a, b], &[pause], voice, speed)
            }
            _ => turn("complete", &[q], &[], voice, speed),
        });
    }
    out
}
