//! The `openai` director's turn time against the local chat-completions
//! double with a fixed model delay: one round trip per turn (`single`) vs the
//! first generation's search-then-play (`two-step`). Real NATS, clip-selector
//! and llm processes; turn time is transcript published → play command seen.
//!
//!     cargo bench -p tests --bench openai
//!     CINEMA_BENCH_MODEL_MS=300 CINEMA_BENCH_TURNS=40 cargo bench -p tests --bench openai
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bus::subjects::SessionEvent;
use testkit::openai::OpenAiDouble;
use tests::{DirectorRig, FILM, FILM_TWO, next, percentile};
use wire::v1::PlayCommand;

/// Turn times (ms) of `turns` turns in sessions of ten.
async fn measure(flow: &str, model_delay: Duration, turns: usize) -> Vec<f64> {
    let double = OpenAiDouble::start().await;
    double.set_delay(model_delay);
    let env = [
        ("CINEMA_DIRECTOR", "openai"),
        ("OPENAI_BASE_URL", double.url()),
        ("OPENAI_API_KEY", "bench"),
        ("CINEMA_LLM_FLOW", flow),
    ];
    let rig = DirectorRig::start(&env, 1).await;
    let lines: Vec<&str> = FILM.1.iter().chain(FILM_TWO.1).copied().collect();
    let mut samples = Vec::new();
    let mut session = 0;
    while samples.len() < turns {
        session += 1;
        let sid = format!("bench-{flow}-{session}");
        let mut plays = rig.subscribe(&sid, SessionEvent::Play).await;
        rig.join(&sid).await;
        next::<PlayCommand>(&mut plays, "the greeting", |p| p.greeting).await;
        for (i, line) in lines.iter().cycle().skip(session).take(10).enumerate() {
            let t = Instant::now();
            rig.say(&sid, &format!("u{i}"), line).await;
            let p = next::<PlayCommand>(&mut plays, line, |p| !p.greeting).await;
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(!p.clip_id.is_empty());
        }
        rig.end(&sid).await;
    }
    let requests = double.requests().len();
    samples.truncate(turns);
    samples.sort_by(f64::total_cmp);
    println!(
        "openai {flow:<9} turns={:<4} model requests={:<4} p50={:>7.1} ms  p95={:>7.1} ms  p99={:>7.1} ms  max={:>7.1} ms",
        samples.len(),
        requests,
        percentile(&samples, 50.0),
        percentile(&samples, 95.0),
        percentile(&samples, 99.0),
        samples.last().unwrap()
    );
    samples
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let delay = Duration::from_millis(tests::env_or("CINEMA_BENCH_MODEL_MS", 300));
    let turns = tests::env_or("CINEMA_BENCH_TURNS", 40) as usize;
    // Build the binaries before anything is timed.
    testkit::bin("llm");
    println!(
        "model delay {} ms per request, {turns} turns per flow",
        delay.as_millis()
    );
    let single = measure("single", delay, turns).await;
    let two = measure("two-step", delay, turns).await;
    for p in [50.0, 95.0, 99.0] {
        println!(
            "single / two-step at p{p:.0}: {:.2}",
            percentile(&single, p) / percentile(&two, p)
        );
    }
}
