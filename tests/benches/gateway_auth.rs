//! What the gateway's access checks cost: requests/s and latency of
//! `GET /conversation-status/{id}` (a real conversation's record) from 8
//! concurrent clients, on three gateways of one hub:
//!
//! - `open`: no token, loopback; the Host check on every request;
//! - `token`: `CINEMA_API_TOKEN` set; the bearer token checked on every
//!   request (in constant time), no Host check;
//! - `token+host`: a token and `CINEMA_GATEWAY_ALLOWED_HOSTS`: both.
//!
//! Rounds alternate between the gateways, so a slower moment of the machine
//! falls on all of them.
//!
//!     cargo bench -p tests --bench gateway_auth
//!     CINEMA_BENCH_SECS=3 CINEMA_BENCH_ROUNDS=2 cargo bench -p tests --bench gateway_auth
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use tests::{World, percentile};

const TOKEN: &str = "bench-token-5e0b";

/// 8 clients for `secs`: (requests, samples in ms).
async fn hammer(url: &str, token: Option<&str>, secs: u64) -> (u64, Vec<f64>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let http = reqwest::Client::new();
            let url = url.to_string();
            let token = token.map(str::to_string);
            tokio::spawn(async move {
                let mut took = Vec::new();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let mut req = http.get(&url);
                    if let Some(t) = &token {
                        req = req.bearer_auth(t);
                    }
                    let r = req.send().await.unwrap();
                    assert_eq!(r.status(), 200, "{url}");
                    r.bytes().await.unwrap();
                    took.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
                took
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    (all.len() as u64, all)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs = tests::env_or("CINEMA_BENCH_SECS", 5) as u64;
    let rounds = tests::env_or("CINEMA_BENCH_ROUNDS", 3);
    let w = World::start_in_process().await;
    let services = w.services.as_ref().unwrap();
    let mut gateways = vec![("open", w.base.clone(), None)];
    for (name, hosts) in [
        ("token", None),
        ("token+host", Some("tv.example,127.0.0.1")),
    ] {
        let port = testkit::free_port();
        let mut vars = vec![
            ("NATS_URL".to_string(), w.nats.url()),
            ("PORT".to_string(), port.to_string()),
            ("CINEMA_API_TOKEN".to_string(), TOKEN.to_string()),
            ("RUST_LOG".to_string(), "warn".to_string()),
        ];
        if let Some(h) = hosts {
            vars.push(("CINEMA_GATEWAY_ALLOWED_HOSTS".to_string(), h.to_string()));
        }
        services
            .start("dashboard-gateway", &vars, dashboard_gateway::run)
            .unwrap();
        gateways.push((name, format!("http://127.0.0.1:{port}"), Some(TOKEN)));
    }
    // A real conversation's record: the greeting and one answer.
    let sid = w.answered_session().await;
    for (_, base, token) in &gateways {
        // Warm: every gateway answers before the clock starts.
        hammer(&format!("{base}/conversation-status/{sid}"), *token, 1).await;
    }

    let mut totals: Vec<(u64, Vec<f64>)> = vec![(0, Vec::new()); gateways.len()];
    for _ in 0..rounds {
        for (i, (_, base, token)) in gateways.iter().enumerate() {
            let (n, samples) =
                hammer(&format!("{base}/conversation-status/{sid}"), *token, secs).await;
            totals[i].0 += n;
            totals[i].1.extend(samples);
        }
    }
    let wall = (secs * rounds as u64) as f64;
    println!("GET /conversation-status/{{id}}, 8 clients, {rounds} rounds of {secs} s per gateway");
    let base_rate = totals[0].0 as f64 / wall;
    for ((name, _, _), (n, samples)) in gateways.iter().zip(totals.iter_mut()) {
        samples.sort_by(f64::total_cmp);
        let rate = *n as f64 / wall;
        println!(
            "{name:<11} {rate:>8.0} req/s  ratio {:.3}  p50={:.2} ms  p95={:.2} ms  p99={:.2} ms",
            rate / base_rate,
            percentile(samples, 50.0),
            percentile(samples, 95.0),
            percentile(samples, 99.0),
        );
    }
}
