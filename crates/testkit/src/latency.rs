//! Latency samples for benchmarks: each input timed once after a warm-up,
//! sorted, and printed as p50/p95/p99.

use std::time::{Duration, Instant};

/// Runs `f` on every `warm` input (untimed: nothing cached from them helps
/// the timed ones when they differ), then times it once per input; sorted.
pub fn time_each<'a>(
    warm: impl IntoIterator<Item = &'a str>,
    inputs: &[String],
    mut f: impl FnMut(&str),
) -> Vec<Duration> {
    for w in warm {
        f(w);
    }
    let mut times: Vec<Duration> = inputs
        .iter()
        .map(|q| {
            let t = Instant::now();
            f(q);
            t.elapsed()
        })
        .collect();
    times.sort();
    times
}

/// The `p`th percentile (nearest rank below) of sorted times, in ms.
pub fn percentile_ms(sorted: &[Duration], p: usize) -> f64 {
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// Prints `name n=… p50=… ms p95=… ms p99=… ms`, the name padded to `width`.
pub fn report(name: &str, width: usize, sorted: &[Duration]) {
    println!(
        "{name:<width$} n={} p50={:6.2} ms p95={:6.2} ms p99={:6.2} ms",
        sorted.len(),
        percentile_ms(sorted, 50),
        percentile_ms(sorted, 95),
        percentile_ms(sorted, 99)
    );
}
