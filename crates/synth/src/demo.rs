//! The demo library: short original films written so that answering a line
//! with the line that followed it in a film makes a pleasant conversation.

use std::path::Path;

use crate::{Error, Film, make_film};

/// (file stem, espeak-ng voice, lines). Each film is a small dialogue: a line
/// and the line after it form a question and answer, a greeting and its reply.
pub const DEMO_FILMS: &[(&str, &str, &[&str])] = &[
    (
        "the-lighthouse-keeper",
        "en-us",
        &[
            "Hello there, stranger!",
            "Hello! Welcome to the lighthouse.",
            "How are you today?",
            "I am fine, thank you. The sea is calm.",
            "What is your name?",
            "They call me the keeper of the light.",
            "Goodbye, my friend.",
            "Goodbye. Come back when the storm is over.",
            "Hello? Are you still there?",
            "I am still here, listening to the waves.",
        ],
    ),
    (
        "midnight-train",
        "en-gb",
        &[
            "Good evening. Is this seat taken?",
            "No, please sit down.",
            "Where are you going?",
            "I am going home, to the city by the river.",
            "Are you afraid of the dark?",
            "Only when the lights go out.",
            "Do you like movies?",
            "I love movies. Every night is a new story.",
        ],
    ),
    (
        "the-last-summer",
        "en-us+f3",
        &[
            "Why are you so sad?",
            "Because the summer is ending.",
            "I missed you so much.",
            "I missed you too. I thought of you every day.",
            "Tell me a story.",
            "Once upon a time, there was a television that could talk.",
            "Are you happy?",
            "Yes! This is the happiest day of my life.",
        ],
    ),
    (
        "detective-at-dawn",
        "en-us+m3",
        &[
            "Who are you?",
            "I am a detective. I ask the questions here.",
            "What do you want from me?",
            "The truth. Nothing but the truth.",
            "I don't know what you are talking about.",
            "Tell me more.",
            "Thank you for your help.",
            "You are welcome. Take care of yourself.",
        ],
    ),
];

/// Writes the demo films into `dir` (skipping any already there).
pub fn demo_library(dir: &Path) -> Result<Vec<Film>, Error> {
    let mut films = Vec::new();
    for (stem, voice, lines) in DEMO_FILMS {
        if dir.join(format!("{stem}.mp4")).exists() && dir.join(format!("{stem}.srt")).exists() {
            continue;
        }
        films.push(make_film(dir, stem, voice, lines)?);
    }
    Ok(films)
}
