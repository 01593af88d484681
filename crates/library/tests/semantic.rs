//! Semantic and hybrid search with the real embedding model
//! (all-MiniLM-L6-v2, fetched by `scripts/setup`). Tests that need the model
//! fail with an install hint when it is missing.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use library::embed::{self, DIM, Embedder};
use library::{CutOptions, Library};
use wire::v1::{Clip, SearchMode, SearchRequest};

const HARBOR: &[&str] = &[
    "Where have you been all night?",
    "I was down at the docks, waiting for the boat.",
    "I am starving, let's get something to eat.",
    "There's a diner on the corner that stays open late.",
    "Do you think it will rain tomorrow?",
    "The sky looks dark over the mountains.",
    "Call the police, somebody broke into the house!",
    "Stay calm, help is on the way.",
    "I love you more than anything in the world.",
    "You never told me that before.",
    "The car won't start again.",
    "Maybe the battery is dead.",
];

const STATION: &[&str] = &[
    "Good morning, sir, may I see your ticket?",
    "Here it is, I bought it yesterday.",
    "The train to the capital leaves at noon.",
    "Then we still have time for coffee.",
    "My dog ran away this morning.",
    "We will find him, dogs always come home.",
    "I can't sleep, the neighbours are too loud.",
    "Try these earplugs, they work wonders.",
    "How much does this cost?",
    "Twenty dollars, but for you, fifteen.",
    "I could eat a horse, I'm so hungry.",
    "Lunch is on me today.",
];

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
            &[("harbor-nights", HARBOR), ("quiet-station", STATION)],
        );
        let opt = CutOptions::default();
        let hybrid = Library::open(dir.path(), opt, Some(&model)).expect("library");
        assert!(
            hybrid.is_semantic(),
            "the model at {} did not load",
            model.display()
        );
        let lexical = Library::open(dir.path(), opt, None).expect("library");
        Fixture {
            _dir: dir,
            hybrid,
            lexical,
        }
    })
}

fn search(lib: &Library, query: &str, mode: SearchMode) -> Vec<Clip> {
    lib.search(&SearchRequest {
        query: query.into(),
        mode: mode as i32,
        limit: 5,
        ..Default::default()
    })
    .expect("search")
    .into_iter()
    .map(|(c, _)| c)
    .collect()
}

fn captions(clips: &[Clip]) -> Vec<&str> {
    clips.iter().map(|c| c.caption.as_str()).collect()
}

#[test]
fn paraphrases_embed_closer_than_unrelated_lines() {
    let embedder = Embedder::load(&testkit::embedding_model()).expect("model");
    let texts = [
        "I am starving, let's get something to eat.",
        "I'm so hungry I could eat a horse.",
        "The train to the capital leaves at noon.",
        "Call the police, somebody broke into the house!",
    ];
    let v = embedder.embed(&texts).expect("embed");
    assert_eq!(v.len(), 4);
    for x in &v {
        assert_eq!(x.len(), DIM);
        let norm = embed::dot(x, x).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
    }
    let para = embed::dot(&v[0], &v[1]);
    let unrelated = embed::dot(&v[0], &v[2]).max(embed::dot(&v[0], &v[3]));
    assert!(
        para > 0.5 && unrelated < 0.3 && para > unrelated + 0.3,
        "paraphrase {para}, unrelated {unrelated}"
    );
    // Padding stays out of the mean: a short line embeds the same alone and
    // batched beside a long one.
    let alone = embedder.embed_one(texts[1]).expect("embed one");
    let padded = embedder
        .embed(&[
            texts[1],
            &"a much longer line than the other one ".repeat(6),
        ])
        .expect("embed batch");
    let same = embed::dot(&alone, &padded[0]);
    assert!(same > 0.9999, "batched vs alone: {same}");
}

#[test]
fn a_missing_model_file_is_named_with_the_install_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Embedder::load(dir.path()).expect_err("no model here");
    let msg = err.to_string();
    assert!(msg.contains("model.safetensors"), "{msg}");
    assert!(msg.contains("scripts/setup"), "{msg}");
    assert!(msg.contains("CINEMA_EMBEDDING_MODEL"), "{msg}");
}

#[test]
fn hybrid_finds_a_paraphrase_that_shares_no_word() {
    let f = fixture();
    let query = "famished, need lunch";
    // "lunch" is a word of one line; the starving line shares none.
    let lexical = search(&f.lexical, query, SearchMode::Description);
    assert!(
        !captions(&lexical).contains(&"I am starving, let's get something to eat."),
        "{lexical:?}"
    );
    let hybrid = search(&f.hybrid, query, SearchMode::Description);
    let top = captions(&hybrid);
    assert!(
        top[..2].contains(&"I am starving, let's get something to eat."),
        "{top:?}"
    );
    // Lexical hits survive fusion.
    assert!(top.contains(&"Lunch is on me today."), "{top:?}");

    let hybrid = search(&f.hybrid, "my pet escaped", SearchMode::Description);
    assert_eq!(hybrid[0].caption, "My dog ran away this morning.");
}

#[test]
fn answer_mode_matches_the_cue_by_meaning_and_returns_the_reply() {
    let f = fixture();
    // Paraphrases the cue "Call the police, somebody broke into the house!".
    let query = "Thieves got inside our apartment, dial emergency services";
    assert!(search(&f.lexical, query, SearchMode::Answer).is_empty());
    let hits = search(&f.hybrid, query, SearchMode::Answer);
    assert_eq!(
        hits[0].caption,
        "Stay calm, help is on the way.",
        "{:?}",
        captions(&hits)
    );
    assert_eq!(
        hits[0].cue,
        "Call the police, somebody broke into the house!"
    );

    let hits = search(
        &f.hybrid,
        "can you show me your travel pass",
        SearchMode::Answer,
    );
    assert_eq!(
        hits[0].caption,
        "Here it is, I bought it yesterday.",
        "{:?}",
        captions(&hits)
    );
    // Answer mode never returns a film's first line: nothing comes before it.
    assert!(hits.iter().all(|c| c.line_index > 0));
}

#[test]
fn unrelated_queries_find_nothing_semantically() {
    let f = fixture();
    let hits = search(
        &f.hybrid,
        "quantum chromodynamics lattice",
        SearchMode::Description,
    );
    assert!(hits.is_empty(), "{:?}", captions(&hits));
}

#[test]
fn filters_hold_in_hybrid_search() {
    let f = fixture();
    let base = SearchRequest {
        query: "I'm hungry, where can we eat".into(),
        mode: SearchMode::Description as i32,
        limit: 10,
        ..Default::default()
    };
    let all = f.hybrid.search(&base).expect("search");
    assert!(all.len() >= 3);
    let station = all
        .iter()
        .find(|(c, _)| c.caption.starts_with("I could eat a horse"))
        .map(|(c, _)| c.film_id.clone())
        .expect("the horse line");

    let by_film = f
        .hybrid
        .search(&SearchRequest {
            film_id: station.clone(),
            ..base.clone()
        })
        .expect("search");
    assert!(!by_film.is_empty());
    assert!(by_film.iter().all(|(c, _)| c.film_id == station));

    let top = all[0].0.id.clone();
    let excluded = f
        .hybrid
        .search(&SearchRequest {
            exclude_ids: vec![top.clone()],
            ..base.clone()
        })
        .expect("search");
    assert!(excluded.iter().all(|(c, _)| c.id != top));
    assert!(excluded.iter().any(|(c, _)| c.id == all[1].0.id));

    // Clips are 2 s lines padded by 0.3 s on each side: 2.6 s.
    for (min, max, want_any) in [
        (2.5, 0.0, true),
        (3.0, 0.0, false),
        (0.0, 2.0, false),
        (0.0, 2.7, true),
    ] {
        let hits = f
            .hybrid
            .search(&SearchRequest {
                min_duration_s: min,
                max_duration_s: max,
                ..base.clone()
            })
            .expect("search");
        assert_eq!(!hits.is_empty(), want_any, "min {min} max {max}: {hits:?}");
        for (c, _) in hits {
            let len = c.end_s - c.start_s;
            assert!(len >= min && (max == 0.0 || len <= max), "{len}");
        }
    }
}

#[test]
fn search_is_deterministic() {
    let f = fixture();
    let a = search(
        &f.hybrid,
        "is the weather going to be bad",
        SearchMode::Description,
    );
    let b = search(
        &f.hybrid,
        "is the weather going to be bad",
        SearchMode::Description,
    );
    assert_eq!(a, b);
    assert!(!a.is_empty());
}

/// Log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_missing_model_means_lexical_search_and_one_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    testkit::subtitle_films(dir.path(), &[("harbor-nights", HARBOR)]);
    let missing = dir.path().join("no-such-model");
    for model in [Some(missing.as_path()), None] {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let lib = tracing::subscriber::with_default(subscriber, || {
            Library::open(dir.path(), CutOptions::default(), model)
        })
        .expect("the library opens without the model");
        assert!(!lib.is_semantic());
        let hits = search(&lib, "police", SearchMode::Description);
        assert_eq!(
            hits[0].caption,
            "Call the police, somebody broke into the house!"
        );
        let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf-8");
        let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 1, "{text}");
        assert!(warnings[0].contains("lexical only"), "{text}");
        if model.is_some() {
            assert!(warnings[0].contains("model.safetensors"), "{text}");
        }
    }
}

#[test]
fn vectors_are_kept_in_the_catalog_and_remade_when_damaged() {
    let model = testkit::embedding_model();
    let dir = tempfile::tempdir().expect("tempdir");
    testkit::subtitle_films(dir.path(), &[("harbor-nights", HARBOR)]);
    let first = Library::open(dir.path(), CutOptions::default(), Some(&model)).expect("library");
    let want = search(
        &first,
        "someone is robbing my home",
        SearchMode::Description,
    );
    let index = library::IndexDir::inside(dir.path());
    let entries = index.load();
    assert_eq!(entries.len(), 1);
    let lines = entries[0].clips.len();
    assert_eq!(
        entries[0].vectors.len(),
        lines * (4 + 384),
        "a scale and 384 codes a line"
    );
    assert!(
        entries[0].embedding_model.starts_with("all-MiniLM-L6-v2:"),
        "{}",
        entries[0].embedding_model
    );
    // Opened again: the same answers from the stored vectors.
    let again = Library::open(dir.path(), CutOptions::default(), Some(&model)).expect("library");
    assert!(again.is_semantic());
    let got = search(
        &again,
        "someone is robbing my home",
        SearchMode::Description,
    );
    assert_eq!(captions(&got), captions(&want));
    // Damaged vectors (cut short) are made again, not trusted.
    let mut damaged = entries[0].clone();
    damaged.vectors.truncate(100);
    let path = index
        .films()
        .join(format!("{}.pb", damaged.film.as_ref().unwrap().id));
    std::fs::write(&path, prost::Message::encode_to_vec(&damaged)).expect("write");
    let healed = Library::open(dir.path(), CutOptions::default(), Some(&model)).expect("library");
    assert_eq!(
        captions(&search(
            &healed,
            "someone is robbing my home",
            SearchMode::Description
        )),
        captions(&want)
    );
    assert_eq!(index.load()[0].vectors.len(), lines * (4 + 384));
}
