//! Answer search among noise: a dialogue film beside a film whose subtitles
//! are a carelessly converted screenplay (stage directions, character names,
//! fragments), with the real embedding model (hybrid) and without it.

use std::sync::OnceLock;

use library::{CutOptions, Found, Library};
use wire::v1::{SearchMode, SearchRequest};

const PORTER: &[&str] = &[
    "Good evening. Do you have a room for tonight?",
    "We have one room left, on the top floor.",
    "You look exhausted.",
    "I haven't slept in three days.",
    "Who are you?",
    "Nobody important.",
    "Is the hotel haunted?",
    "Only on Fridays, and only a little.",
];

/// Screenplay text cut into lines, as a careless conversion leaves it.
const SCREENPLAY: &[&str] = &[
    "INT. HIVE - DAY",
    "ANGLE ON: Barry.",
    "BARRY You look",
    "at the sky, all of you.",
    "[a door slams]",
    "Tired bees stand in line.",
    "JANET Who are you?",
    "BARRY",
    "Nobody important.",
    "Subtitles by somebody",
    "♪ Buzz, buzz, little bee ♪",
    "CUT TO:",
];

/// The porter's "Who are you?" once more, in a second film: an answer as
/// good as the first, told apart only by the conversation.
const ECHO: &[&str] = &["Who are you?", "Nobody important."];

struct Fixture {
    _dir: tempfile::TempDir,
    hybrid: Library,
    lexical: Library,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let model = testkit::embedding_model();
        let dir = tempfile::tempdir().expect("tempdir");
        testkit::subtitle_films(
            dir.path(),
            &[
                ("a-night-porter", PORTER),
                ("b-bee-screenplay", SCREENPLAY),
                ("c-echo", ECHO),
            ],
        );
        let opt = CutOptions::default();
        let hybrid = Library::open(dir.path(), opt, Some(&model)).expect("library");
        assert!(hybrid.is_semantic(), "the model did not load");
        let lexical = Library::open(dir.path(), opt, None).expect("library");
        Fixture {
            _dir: dir,
            hybrid,
            lexical,
        }
    })
}

fn answers(lib: &Library, query: &str, previous: &str) -> Vec<Found> {
    lib.search_hits(&SearchRequest {
        query: query.into(),
        mode: SearchMode::Answer as i32,
        limit: 10,
        previous_clip_id: previous.into(),
        ..Default::default()
    })
    .expect("search")
}

#[test]
fn lines_that_are_not_speech_are_marked_and_never_answers() {
    for lib in [&fixture().hybrid, &fixture().lexical] {
        let marked: Vec<(&str, &str)> = lib
            .clips()
            .iter()
            .filter(|c| !c.not_speech.is_empty())
            .map(|c| (c.caption.as_str(), c.not_speech.as_str()))
            .collect();
        assert_eq!(
            marked,
            [
                ("INT. HIVE - DAY", "direction"),
                ("ANGLE ON: Barry.", "direction"),
                ("at the sky, all of you.", "fragment"),
                ("[a door slams]", "direction"),
                ("BARRY", "name"),
                ("Subtitles by somebody", "credit"),
                ("♪ Buzz, buzz, little bee ♪", "lyric"),
                ("CUT TO:", "direction"),
            ]
        );
        for query in ["Who are you?", "Buzz buzz", "You look at the sky", "Barry"] {
            for hit in answers(lib, query, "") {
                assert!(hit.clip.not_speech.is_empty(), "{query:?} → {:?}", hit.clip);
                // Nor after a line that is not speech: "Tired bees stand in
                // line." follows a door slamming, not a question.
                assert_ne!(hit.clip.caption, "Tired bees stand in line.");
            }
        }
    }
}

#[test]
fn a_cue_that_shares_a_word_loses_to_one_that_means_the_line() {
    let lib = &fixture().hybrid;
    let hits = answers(lib, "You look really tired.", "");
    assert_eq!(hits[0].clip.caption, "I haven't slept in three days.");
    assert!(hits[0].score >= 0.5, "{:?}", hits[0]);
    assert!(
        hits[0].reason.contains("like the line in meaning"),
        "{}",
        hits[0].reason
    );
    // The screenplay's "You look" is cut mid-sentence: its next line is a
    // fragment and never an answer.
    assert!(
        hits.iter()
            .all(|h| h.clip.caption != "at the sky, all of you.")
    );
}

#[test]
fn scores_are_chances_and_low_when_nothing_answers() {
    let lib = &fixture().hybrid;
    let fits = answers(lib, "Is this hotel haunted?", "");
    assert_eq!(fits[0].clip.caption, "Only on Fridays, and only a little.");
    assert!(fits[0].score >= 0.5, "{:?}", fits[0]);
    for query in [
        "What is the capital of Peru?",
        "How do I fix my bicycle chain?",
    ] {
        let hits = answers(lib, query, "");
        assert!(
            hits.iter().all(|h| h.score < 0.5 && h.score >= 0.0),
            "{query:?}: {hits:?}"
        );
    }
    for h in &fits {
        assert!((0.0..=1.0).contains(&h.score));
    }
}

#[test]
fn the_film_just_played_is_preferred_to_an_equal_answer() {
    for lib in [&fixture().hybrid, &fixture().lexical] {
        let nobody = |previous: &str| -> String {
            let hits = answers(lib, "Who are you?", previous);
            let first = &hits[0].clip;
            assert_eq!(first.caption, "Nobody important.");
            first.film_id.clone()
        };
        let porter = lib
            .clips()
            .iter()
            .find(|c| c.caption == "You look exhausted.")
            .expect("porter clip");
        let echo = lib
            .clips()
            .iter()
            .find(|c| c.caption == "Who are you?" && c.film_id != porter.film_id)
            .expect("echo clip");
        assert_eq!(nobody(&porter.id), porter.film_id);
        assert_eq!(nobody(&echo.id), echo.film_id);
    }
}

#[test]
fn without_the_model_words_alone_judge() {
    let lib = &fixture().lexical;
    let hits = answers(lib, "You look exhausted!", "");
    assert_eq!(hits[0].clip.caption, "I haven't slept in three days.");
    assert!(hits[0].score >= 0.5, "{:?}", hits[0]);
    assert!(hits[0].reason.contains("words"), "{}", hits[0].reason);
    let none = answers(lib, "Purple monkey dishwasher.", "");
    assert!(none.iter().all(|h| h.score < 0.5), "{none:?}");
}
