//! Search latency, ingest throughput, index size and memory over a generated
//! library: `CINEMA_BENCH_LINES` subtitle lines (100,000 by default) in films
//! of 1,000 lines (`.srt` sidecars beside empty placeholder videos).
//!
//! `cargo bench -p library --bench search`. Needs the embedding model
//! (`scripts/setup`, or `CINEMA_EMBEDDING_MODEL`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use library::{CutOptions, Library};
use testkit::latency;
use wire::v1::{SearchMode, SearchRequest};

const LINES_PER_FILM: usize = 1000;
const QUERIES: usize = 500;
const WARM_UP: &[&str] = &[
    "warming up the model",
    "is anybody there at all",
    "the quick brown fox jumps over the lazy dog",
    "what time does the show start",
    "i would like a cup of tea please",
];

fn main() {
    let lines: usize = std::env::var("CINEMA_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let model = testkit::embedding_model();
    // `CINEMA_BENCH_DIR` keeps the library (and its catalog) between runs:
    // the ingest lines then time a reopen, and the searches run at once.
    let temp = tempfile::tempdir().expect("tempdir");
    let kept = std::env::var_os("CINEMA_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = kept.as_deref().unwrap_or(temp.path());
    std::fs::create_dir_all(dir).expect("bench dir");
    let started = Instant::now();
    let films = write_library(dir, lines);
    println!(
        "library        {lines} lines in {films} films, written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("rss            {:.1} MiB before loading", rss_mib());

    let opt = CutOptions::default();
    let started = Instant::now();
    let lexical = Library::open(dir, opt, None).expect("library");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingest lexical {secs:.2} s, {:.0} lines/s (no embeddings; probe, keyframes, subtitles, catalog, BM25; no scenes or thumbnails)",
        lexical.len() as f64 / secs
    );
    let index = library::IndexDir::inside(dir);
    let (catalog_bytes, _) = index.size_on_disk();
    println!(
        "catalog        {catalog_bytes} bytes on disk, {:.0} bytes per 1,000 lines (no vectors)",
        catalog_bytes as f64 * 1000.0 / lexical.len().max(1) as f64
    );
    drop(lexical);
    let started = Instant::now();
    let lexical = Library::open(dir, opt, None).expect("library");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "reopen lexical {secs:.2} s, {:.0} lines/s (nothing changed: catalog read, BM25 built)",
        lexical.len() as f64 / secs
    );
    println!(
        "rss            {:.1} MiB with the lexical library loaded",
        rss_mib()
    );
    drop(lexical);

    let started = Instant::now();
    let lib = Library::open(dir, opt, Some(&model)).expect("library");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingest hybrid  {secs:.2} s, {:.0} lines/s (embedding every line into the catalog)",
        lib.len() as f64 / secs
    );
    let (catalog_bytes, _) = index.size_on_disk();
    println!(
        "catalog        {catalog_bytes} bytes on disk, {:.0} bytes per 1,000 lines (with vectors)",
        catalog_bytes as f64 * 1000.0 / lib.len().max(1) as f64
    );
    drop(lib);
    let started = Instant::now();
    let lib = Library::open(dir, opt, Some(&model)).expect("library");
    let secs = started.elapsed().as_secs_f64();
    println!("reopen hybrid  {secs:.2} s (vectors read from the catalog, nothing embedded)",);
    let semantic = lib.semantic().expect("the embedding model loads");
    let index = semantic.index();
    println!(
        "vectors        {} rows, {} bytes, {:.0} bytes per 1,000 lines (f32 would be {})",
        index.len(),
        index.bytes(),
        index.bytes() as f64 * 1000.0 / index.len().max(1) as f64,
        1000 * 384 * 4
    );
    println!(
        "rss            {:.1} MiB with the hybrid library loaded (peak {:.1} MiB)",
        rss_mib(),
        status_mib("VmHWM:")
    );

    let queries = queries();
    let embedder = semantic.embedder();
    let embed = measure(&queries, |q| {
        embedder.embed_one(q).expect("embed");
    });
    report("query embedding", &embed);
    let vectors: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| embedder.embed_one(q).expect("embed"))
        .collect();
    let position = |q: &str| queries.iter().position(|x| x == q).unwrap_or(0);
    let scan = measure(&queries, |q| {
        let _ = index.search(&vectors[position(q)], 50, |_| true);
    });
    report("vector search", &scan);
    let mut found = 0;
    for v in vectors.iter().take(100) {
        let fast: Vec<usize> = index
            .search(v, 10, |_| true)
            .iter()
            .map(|h| h.row)
            .collect();
        found += index
            .search_exhaustive(v, 10)
            .iter()
            .filter(|h| fast.contains(&h.row))
            .count();
    }
    println!(
        "vector recall  {:.3} @10 against the exhaustive int8 scan (100 queries)",
        found as f64 / 1000.0
    );

    for (mode, name) in [
        (SearchMode::Answer, "answer"),
        (SearchMode::Description, "description"),
    ] {
        let request = |q: &str| SearchRequest {
            query: q.to_string(),
            mode: mode as i32,
            limit: 5,
            ..Default::default()
        };
        let lexical = measure(&queries, |q| {
            lib.search_lexical(&request(q)).expect("search");
        });
        let hybrid = measure(&queries, |q| {
            lib.search(&request(q)).expect("search");
        });
        report(&format!("lexical {name}"), &lexical);
        report(&format!("hybrid {name}"), &hybrid);
        println!(
            "ratio {name:<8} hybrid/lexical p50 {:.1}x p99 {:.1}x",
            latency::percentile_ms(&hybrid, 50) / latency::percentile_ms(&lexical, 50),
            latency::percentile_ms(&hybrid, 99) / latency::percentile_ms(&lexical, 99)
        );
    }
    let filtered = measure(&queries, |q| {
        lib.search(&SearchRequest {
            query: q.to_string(),
            mode: SearchMode::Answer as i32,
            limit: 5,
            film_id: lib.films().nth(3).map(|f| f.id.clone()).unwrap_or_default(),
            min_duration_s: 1.5,
            ..Default::default()
        })
        .expect("search");
    });
    report("hybrid answer, one film", &filtered);
    let sample = lib
        .search(&SearchRequest {
            query: queries[0].clone(),
            mode: SearchMode::Answer as i32,
            limit: 3,
            ..Default::default()
        })
        .expect("search");
    println!("example        {:?} →", queries[0]);
    for (clip, score) in sample {
        println!(
            "                 {score:.4} cue {:?} → {:?}",
            clip.cue, clip.caption
        );
    }
}

/// Each query timed once after warming up on lines that are not queries.
fn measure(queries: &[String], f: impl FnMut(&str)) -> Vec<Duration> {
    latency::time_each(WARM_UP.iter().copied(), queries, f)
}

fn report(name: &str, sorted: &[Duration]) {
    latency::report(name, 14, sorted);
}

fn status_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

const NAMES: &[&str] = &[
    "Jack", "Mary", "Frank", "Rosa", "Eddie", "Nora", "Sam", "Lucy", "Walter", "Iris", "Vince",
    "Clara", "Moe", "Dolores", "Hank", "June", "Arthur", "Kitty", "Lou", "Vera",
];
const PLACES: &[&str] = &[
    "the station",
    "the docks",
    "the old mill",
    "the diner",
    "the hospital",
    "the airport",
    "the bank",
    "the church",
    "the hotel",
    "the border",
    "the lake",
    "the factory",
    "the casino",
    "the farm",
    "downtown",
    "the precinct",
    "the harbor",
    "the bridge",
    "the cemetery",
    "your mother's place",
    "the racetrack",
    "the motel",
    "the lighthouse",
    "the embassy",
];
const TIMES: &[&str] = &[
    "tonight",
    "tomorrow morning",
    "at noon",
    "by midnight",
    "next week",
    "an hour ago",
    "yesterday",
    "right now",
    "before dawn",
    "after the funeral",
    "on Sunday",
    "last night",
    "in ten minutes",
    "when the rain stops",
    "all summer",
];
const OBJECTS: &[&str] = &[
    "the money",
    "the car keys",
    "the letter",
    "a gun",
    "the map",
    "your coat",
    "the diamonds",
    "the tickets",
    "my hat",
    "the photographs",
    "the briefcase",
    "a cigarette",
    "the key to the safe",
    "some coffee",
    "the evidence",
    "the ring",
    "the suitcase",
    "the contract",
    "a bottle of whiskey",
    "the baby's blanket",
    "the radio",
    "a horse",
];
const FEELINGS: &[&str] = &[
    "scared", "happy", "tired", "angry", "lonely", "sick", "hungry", "cold", "lucky", "ashamed",
    "free", "old", "nervous", "proud",
];
const JOBS: &[&str] = &[
    "doctor",
    "sheriff",
    "priest",
    "lawyer",
    "captain",
    "driver",
    "nurse",
    "mayor",
    "bartender",
    "colonel",
    "landlord",
    "judge",
];
const SHORT: &[&str] = &[
    "Yes.",
    "No.",
    "Why?",
    "I don't know.",
    "Get out!",
    "Hello?",
    "What?",
    "Okay.",
    "Thank you.",
    "Come on!",
    "Wait!",
    "Who's there?",
    "Never.",
    "Of course.",
    "Look out!",
    "Shut up.",
    "I'm sorry.",
    "Really?",
    "Let's go.",
    "Hurry up!",
    "Not now.",
    "Good night.",
];

fn line(r: &mut Rng) -> String {
    let (n, m) = (r.pick(NAMES), r.pick(NAMES));
    let (p, t, o) = (r.pick(PLACES), r.pick(TIMES), r.pick(OBJECTS));
    let (f, j) = (r.pick(FEELINGS), r.pick(JOBS));
    match r.next() % 32 {
        0..=5 => r.pick(SHORT).to_string(),
        6 => format!("Where were you {t}?"),
        7 => format!("I left {o} at {p}."),
        8 => format!("{n}, bring {o} and meet me at {p} {t}."),
        9 => format!("Don't tell {n} about {o}."),
        10 => format!("Have you seen {n}? I saw them at {p} {t}."),
        11 => format!("We have to leave {t}, before {n} finds out."),
        12 => format!("I never wanted any of this, {n}."),
        13 => format!("Is it true that {n} sold {o}?"),
        14 => format!("Nobody goes to {p} {t}."),
        15 => format!("I'm telling you, {n}, {o} was gone when I got to {p}."),
        16 => format!("Put down {o}, {n}. Slowly."),
        17 => format!("How long have you known {n}?"),
        18 => format!("Since the war. We met at {p}."),
        19 => format!("It's cold at {p} {t}."),
        20 => format!("The {j} says {n} won't make it."),
        21 => format!("Promise me you'll take care of {m}."),
        22 => format!("I'm sorry about {o}, {n}."),
        23 => format!("{n} is dead, and {o} is missing."),
        24 => format!("I feel {f} every time I think about {p}."),
        25 => format!("Why are you so {f}, {n}?"),
        26 => format!("Tell the {j} I'll be at {p} {t}."),
        27 => format!("{m} wants {o} back {t}, or else."),
        28 => format!("You look {f}. Sit down, I'll get {o}."),
        29 => format!("Did {n} really marry the {j}?"),
        30 => format!("If {n} calls, I'm at {p}."),
        _ => format!("{} Where's {o}?", r.pick(SHORT)),
    }
}

fn stamp(ms: usize) -> String {
    format!(
        "{:02}:{:02}:{:02},{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Films of [`LINES_PER_FILM`] lines; returns how many.
fn write_library(dir: &Path, lines: usize) -> usize {
    let films = lines.div_ceil(LINES_PER_FILM);
    let written = dir.join(format!(".written-{lines}"));
    if written.exists() {
        return films;
    }
    // Every film is a hard link to one blank video long enough for its lines.
    let blank = dir.join(".blank.mp4");
    testkit::blank_film(&blank, 6 * 3600);
    for film in 0..films {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15 ^ (film as u64 + 1));
        let n = LINES_PER_FILM.min(lines - film * LINES_PER_FILM);
        let mut srt = String::new();
        let mut at = 1000;
        for i in 0..n {
            let text = line(&mut r);
            let len = 800 + text.len() * 55;
            let _ = write!(
                srt,
                "{}\n{} --> {}\n{text}\n\n",
                i + 1,
                stamp(at),
                stamp(at + len)
            );
            at += len + 200 + (r.next() % 2500) as usize;
        }
        let stem = format!("film-{film:04}");
        std::fs::hard_link(&blank, dir.join(format!("{stem}.mp4"))).expect("video");
        std::fs::write(dir.join(format!("{stem}.srt")), srt).expect("srt");
    }
    std::fs::write(&written, "").expect("marker");
    films
}

/// Distinct queries, phrased as people talk to the TV.
fn queries() -> Vec<String> {
    let mut r = Rng(0xDEAD_BEEF_CAFE_F00D);
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let openers = ["", "so ", "hey, ", "tell me, ", "honestly ", "well "];
    while out.len() < QUERIES {
        let q = format!("{}{}", r.pick(&openers), line(&mut r).to_lowercase());
        if q.split_whitespace().count() >= 3 && seen.insert(q.clone()) {
            out.push(q);
        }
    }
    out
}
