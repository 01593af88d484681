//! How often the director answers right, on libraries that are mostly noise.
//!
//! The dialogue films and visitor lines of `tests/eval/retrieval.toml` (and
//! the demo films), amid real text fetched by `scripts/eval-corpus`, at
//! 1,000, 10,000 and 100,000 lines. A real clip-selector (hybrid search, the
//! embedding model from `scripts/setup`) serves each library over a real
//! nats-server; every visitor line is decided by `llm::decide`, as the
//! retrieval director does in a session's first turn.
//!
//! Printed per library, for the visitor lines the weights of
//! `library::answer` were fitted on and apart for the held-out ones: hit@1
//! and hit@5 of the retrieval director over the lines that have an answer;
//! how often it said "nothing fits" and how often that was right; hit@5 of
//! the search an OpenAI director is shown (`cinema.clips.search`, answer
//! mode, five options); decision time p50/p95/p99.
//!
//!     source scripts/setup
//!     cargo bench -p tests --bench retrieval
//!     CINEMA_BENCH_SIZES=1000 cargo bench -p tests --bench retrieval
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Instant;

use tests::percentile;
use tests::support::eval::{self, EvalSet, Visitor};
use wire::v1::SearchMode;

#[derive(Default)]
struct Tally {
    answerable: usize,
    hit1: usize,
    hit5: usize,
    search_hit5: usize,
    unanswerable: usize,
    said_nothing_fits: usize,
    nothing_fits_right: usize,
    samples: Vec<f64>,
    misses: Vec<String>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

async fn evaluate(bus: &bus::Bus, visitors: &[&Visitor]) -> Tally {
    let config = llm::Config::default();
    let mut t = Tally::default();
    for &v in visitors {
        // What a model is shown: the search's first five answers.
        let answers = async |limit| {
            llm::search_hits(bus, &v.says, SearchMode::Answer, limit, &[])
                .await
                .unwrap()
        };
        let shown = answers(5).await;
        let why: Vec<String> = shown
            .iter()
            .filter_map(|h| {
                let c = h.clip.as_ref()?;
                let mark = if v.answers.contains(&c.caption) {
                    "✓"
                } else {
                    " "
                };
                Some(format!(
                    "      {mark} {:.2} {:?} after {:?}: {}",
                    h.score, c.caption, c.cue, h.reason
                ))
            })
            .collect();
        if let Some(dump) = std::env::var_os("CINEMA_BENCH_DUMP").filter(|_| !v.held_out) {
            // Every candidate's evidence and whether it is acceptable: what
            // the calibration in `library::answer` is fitted on.
            let all = answers(20).await;
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dump)
                .unwrap();
            for h in &all {
                let c = h.clip.as_ref().unwrap();
                use std::io::Write;
                writeln!(
                    out,
                    "{:?}\t{}\t{}\t{:?}",
                    v.says,
                    u8::from(v.answers.contains(&c.caption)),
                    h.reason,
                    c.caption
                )
                .unwrap();
            }
        }
        let started = Instant::now();
        let d = llm::decide(bus, &config, &v.says, &[]).await.unwrap();
        t.samples.push(started.elapsed().as_secs_f64() * 1000.0);
        let nothing_fits = !d.fits;
        t.said_nothing_fits += usize::from(nothing_fits);
        let captions: Vec<&str> = d.options.iter().map(|c| c.caption.as_str()).collect();
        let good = |c: &&str| v.answers.iter().any(|a| a == c);
        let first = if v.answers.is_empty() {
            t.unanswerable += 1;
            t.nothing_fits_right += usize::from(nothing_fits);
            nothing_fits
        } else {
            t.answerable += 1;
            let first = !nothing_fits && captions.first().is_some_and(good);
            t.hit1 += usize::from(first);
            t.hit5 += usize::from(!nothing_fits && captions.iter().take(5).any(good));
            t.search_hit5 += usize::from(
                shown
                    .iter()
                    .filter_map(|h| h.clip.as_ref())
                    .any(|c| good(&c.caption.as_str())),
            );
            first
        };
        if !first {
            t.misses.push(format!(
                "  {:?} → {:?}{} (want {:?})\n{}",
                v.says,
                captions.first(),
                if nothing_fits { " [nothing fits]" } else { "" },
                v.answers.first().map_or("nothing fits", String::as_str),
                why.join("\n")
            ));
        }
    }
    t.samples.sort_by(f64::total_cmp);
    t
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = std::env::var("CINEMA_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000]);
    let model = std::env::var("CINEMA_EMBEDDING_MODEL").unwrap_or_default();
    if model.is_empty() || !Path::new(&model).join("model.safetensors").exists() {
        panic!(
            "the embedding model is missing: `source scripts/setup` fetches it and sets CINEMA_EMBEDDING_MODEL"
        );
    }
    let set = EvalSet::load();
    let corpus = eval::corpus();
    let (held_out, fitted): (Vec<&Visitor>, Vec<&Visitor>) =
        set.visitors.iter().partition(|v| v.held_out);
    let answerable = |vs: &[&Visitor]| vs.iter().filter(|v| !v.answers.is_empty()).count();
    println!(
        "evaluation: {} visitor lines the weights were fitted on ({} with an answer), \
         {} held out ({} with an answer); corpus {}",
        fitted.len(),
        answerable(&fitted),
        held_out.len(),
        answerable(&held_out),
        corpus.display()
    );
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("bench").await;
    let cache = std::env::var("HOME")
        .map(|h| Path::new(&h).join(".cache/cinema-eval"))
        .unwrap();
    for total in sizes {
        let dir = cache.join(format!("library-{total}"));
        let dialogue = eval::make_library(&set, &corpus, total, &dir);
        let (_selector, ready) = tests::selector_process(&bus, &nats.url(), &dir, &model).await;
        println!(
            "library of {total} lines ({dialogue} of dialogue films), ready in {:.1} s:",
            ready.as_secs_f64()
        );
        for (name, visitors) in [("fitted", &fitted), ("held out", &held_out)] {
            let t = evaluate(&bus, visitors).await;
            println!(
                "  {name} lines:\n    \
                 retrieval director  hit@1 {:.2}  hit@5 {:.2}  ({} lines with an answer)\n    \
                 nothing fits        said {} of {} lines, right for {} of the {} without an answer\n    \
                 search shown to the OpenAI director  hit@5 {:.2}\n    \
                 decision  p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms",
                ratio(t.hit1, t.answerable),
                ratio(t.hit5, t.answerable),
                t.answerable,
                t.said_nothing_fits,
                visitors.len(),
                t.nothing_fits_right,
                t.unanswerable,
                ratio(t.search_hit5, t.answerable),
                percentile(&t.samples, 50.0),
                percentile(&t.samples, 95.0),
                percentile(&t.samples, 99.0),
            );
            if std::env::var_os("CINEMA_BENCH_VERBOSE").is_some() {
                println!("    misses:\n{}", t.misses.join("\n"));
            }
        }
    }
}
