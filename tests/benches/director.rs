//! Retrieval director decision time: `llm::decide` over NATS against a real
//! clip-selector process, on the demo library and on a generated library of
//! 100,000 subtitle lines.
//!
//!     cargo bench -p tests --bench director
//!     CINEMA_BENCH_LINES=20000 cargo bench -p tests --bench director
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use tests::{percentile, rss_kib};
use wire::v1::{SearchReply, SearchRequest};

/// Starts clip-selector on `library`, BM25 only (hybrid search has its own
/// bench: `cargo bench -p library --bench search`), and waits for its
/// ingest; returns it, the time that took and the library's size.
async fn selector(
    bus: &bus::Bus,
    nats: &str,
    library: &Path,
) -> (tests::SelectorProcess, Duration, u32) {
    let (process, ready) = tests::selector_process(bus, nats, library, "").await;
    let r: SearchReply = bus
        .request(
            &bus::endpoints::clips::SEARCH,
            &SearchRequest {
                query: "hello".into(),
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (process, ready, r.library_size)
}

async fn measure(name: &str, bus: &bus::Bus, lines: &[String]) {
    let config = llm::Config::default();
    // Lines from the library (what visitors say is often like a film line)
    // and lines from nowhere (the fallbacks), in sessions of ten turns.
    let mut queries: Vec<String> = lines
        .iter()
        .step_by((lines.len() / 400).max(1))
        .take(400)
        .cloned()
        .collect();
    queries.extend(
        [
            "What is the meaning of life?",
            "Do you like pizza?",
            "Tell me a joke",
            "xyzzy",
            "Can you hear me?",
        ]
        .iter()
        .cycle()
        .take(100)
        .map(|s| s.to_string()),
    );
    let mut samples = Vec::new();
    let mut played: Vec<String> = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        if i % 10 == 0 {
            played.clear();
        }
        let t = Instant::now();
        let d = llm::decide(bus, &config, q, &played).await.unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        if let Some(c) = d.options.first() {
            played.push(c.id.clone());
        }
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "{name:<30} decisions={:<4} p50={:>6.2} ms  p95={:>6.2} ms  p99={:>6.2} ms  max={:>6.2} ms",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 95.0),
        percentile(&samples, 99.0),
        samples.last().unwrap()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = std::env::var("CINEMA_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("bench").await;

    let demo = tempfile::tempdir().unwrap();
    synth::demo_library(demo.path()).unwrap();
    let demo_lines: Vec<String> = synth::DEMO_FILMS
        .iter()
        .flat_map(|(_, _, l)| l.iter().map(|s| s.to_string()))
        .collect();
    {
        let (sel, ready, size) = selector(&bus, &nats.url(), demo.path()).await;
        println!(
            "demo library: {size} clips, ready in {:.2} s, clip-selector RSS {:.1} MiB",
            ready.as_secs_f64(),
            rss_kib(sel.0.id()) as f64 / 1024.0
        );
        measure("retrieval, demo library", &bus, &demo_lines).await;
    }

    let big = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let films = total / 100;
    let big_lines = synth::subtitle_library(big.path(), films, 100, 42).unwrap();
    println!(
        "generated {} lines in {films} films in {:.1} s",
        big_lines.len(),
        t.elapsed().as_secs_f64()
    );
    let (sel, ready, size) = selector(&bus, &nats.url(), big.path()).await;
    println!(
        "big library: {size} clips, ingested and ready in {:.2} s ({:.0} lines/s), clip-selector RSS {:.1} MiB",
        ready.as_secs_f64(),
        size as f64 / ready.as_secs_f64(),
        rss_kib(sel.0.id()) as f64 / 1024.0
    );
    measure(
        &format!("retrieval, {}-line library", big_lines.len()),
        &bus,
        &big_lines,
    )
    .await;
}
