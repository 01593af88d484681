//! The hub under Docker Compose, measured (real engine, images built with
//! no registry by `scripts/images`): the images' build (cached) and sizes;
//! `docker compose up` from nothing to every service ready (hub and a Pi
//! host); the hub's memory idle and with 4 sessions; one typed turn's
//! latency (the line said → its play command on the bus) through the
//! containers, against the same on `cinema up`'s processes on this machine.
//!
//!     cargo bench -p tests --bench compose
//!     CINEMA_BENCH_TURNS=50 cargo bench -p tests --bench compose
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use bus::subjects::SessionEvent;
use futures::StreamExt;
use serde_json::json;
use tests::hub::{Hub, LINE, READY};
use tests::{World, report};
use wire::v1::PlayCommand;

/// MiB of a `docker stats` memory figure (`12.3MiB`, `1.1GiB`, `900KiB`).
fn mib(text: &str) -> f64 {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().unwrap_or(0.0);
    match unit {
        "B" => n / 1024.0 / 1024.0,
        "KiB" | "kB" => n / 1024.0,
        "GiB" | "GB" => n * 1024.0,
        _ => n,
    }
}

/// Memory of each of the project's containers (name, MiB), the Pi host's
/// apart.
fn memory(hub: &Hub) -> (f64, f64, Vec<(String, f64)>) {
    let out = Command::new("docker")
        .args([
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.MemUsage}}",
        ])
        .output()
        .unwrap();
    let mut each = Vec::new();
    let (mut hub_mib, mut pi_mib) = (0.0, 0.0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((name, usage)) = line.split_once(' ') else {
            continue;
        };
        if !name.starts_with(&hub.project) {
            continue;
        }
        let m = mib(usage.split('/').next().unwrap_or_default());
        if name.contains("demo-pi") {
            pi_mib += m;
        } else {
            hub_mib += m;
        }
        each.push((name.trim_start_matches(&hub.project).to_string(), m));
    }
    each.sort_by(|a, b| a.0.cmp(&b.0));
    (hub_mib, pi_mib, each)
}

fn image_size(image: &str) -> f64 {
    let out = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Size}}", image])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .unwrap_or(0.0)
        / 1024.0
        / 1024.0
}

/// `turns` typed lines in session `sid`, one at a time: the time from the
/// request to the play command that answers it, in ms.
async fn turns(
    bus: &bus::Bus,
    say: impl AsyncFn(&str) -> u16,
    sid: &str,
    turns: usize,
) -> Vec<f64> {
    let mut plays = bus
        .client()
        .subscribe(SessionEvent::Play.wildcard())
        .await
        .unwrap();
    let mut out = Vec::with_capacity(turns);
    for _ in 0..turns {
        let t0 = Instant::now();
        assert_eq!(say(LINE).await, 202);
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(m) = plays.next().await {
                let p: PlayCommand = bus::decode_message(&m).unwrap();
                if p.session_id == sid && !p.greeting {
                    return;
                }
            }
        })
        .await
        .expect("no answer within 30 s");
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
        // The clip plays; the next line comes after it, as a visitor's would.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = tests::env_or("CINEMA_BENCH_TURNS", 20);

    // Images: built (or found up to date) by scripts/images.
    let t0 = Instant::now();
    tests::hub::images();
    let images_s = t0.elapsed().as_secs_f64();
    let sizes: Vec<(String, f64)> = [
        "cinema-chat:latest",
        "cinema-pi:latest",
        "cinema-pi:latest-bookworm",
        "cinema-local/nats:2.12",
        "cinema-local/debian:bookworm",
        "cinema-local/rust:bookworm",
    ]
    .iter()
    .map(|i| (i.to_string(), image_size(i)))
    .collect();

    // Cold up: no container, no volume (the demo library made and ingested,
    // the embedding of every line, stt loading its model).
    let hub = Hub::new();
    let t0 = Instant::now();
    hub.up();
    hub.ready(READY).await;
    let cold_up_s = t0.elapsed().as_secs_f64();
    // Warm up: the volumes kept (catalog, record).
    hub.compose(&["--profile", "demo-pi", "down", "-t", "10"]);
    let t0 = Instant::now();
    hub.up();
    hub.ready(READY).await;
    let warm_up_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle_hub, idle_pi, idle_each) = memory(&hub);

    // One turn through the containers: a session on the Pi host.
    let bus = hub.bus().await;
    let sid = hub.connect().await;
    let say_path = format!("/api/sessions/{sid}/say");
    let compose_ms = turns(
        &bus,
        async |text: &str| hub.post(&say_path, json!({ "text": text })).await.0,
        &sid,
        n,
    )
    .await;

    // Four sessions at once: the Pi's and three browser sessions, a line
    // said in each.
    let mut sids = vec![sid.clone()];
    for _ in 0..3 {
        let (code, body) = hub.post("/api/connect", json!({ "browser": true })).await;
        assert_eq!(code, 200, "{body}");
        sids.push(body["identifier"].as_str().unwrap().to_string());
    }
    for s in &sids {
        hub.say(s, LINE).await;
    }
    for s in &sids {
        hub.status_until(s, "an answer in each session", |r| {
            r["plays"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (busy_hub, busy_pi, busy_each) = memory(&hub);
    for s in &sids {
        hub.post(&format!("/api/sessions/{s}/end"), json!({})).await;
    }
    drop(hub);

    // The same turn on `cinema up`'s processes (the simulated Pi), here.
    let w = World::start_with(&[("RUST_LOG", "warn")]).await;
    let session = w.connect().await;
    let local_sid = session["identifier"].as_str().unwrap().to_string();
    let say_path = format!("/api/sessions/{local_sid}/say");
    // The stack's own film answers its own line.
    let local_line = tests::FILM.1[2];
    let local_ms = turns(
        &w.bus,
        async |_: &str| {
            w.post(&say_path, Some(json!({ "text": local_line })))
                .await
                .0
        },
        &local_sid,
        n,
    )
    .await;
    w.stop().await;

    println!();
    println!("the hub under docker compose (2 cores, real engine, local images)");
    println!("scripts/images (bases cached, project images rebuilt as needed)   {images_s:.1} s");
    for (image, size) in &sizes {
        println!("image {image:<32} {size:>8.1} MiB");
    }
    println!("compose up → every service ready, no volume (cold)  {cold_up_s:.1} s");
    println!("compose up → every service ready, volumes kept      {warm_up_s:.1} s");
    println!("memory idle: hub {idle_hub:.1} MiB, Pi host {idle_pi:.1} MiB");
    for (name, m) in &idle_each {
        println!("  {name:<28} {m:>7.1} MiB");
    }
    println!("memory with 4 sessions: hub {busy_hub:.1} MiB, Pi host {busy_pi:.1} MiB");
    for (name, m) in &busy_each {
        println!("  {name:<28} {m:>7.1} MiB");
    }
    let p = |v: &[f64], q: f64| {
        let mut sorted = v.to_vec();
        sorted.sort_by(f64::total_cmp);
        tests::percentile(&sorted, q)
    };
    let ratio50 = p(&compose_ms, 50.0) / p(&local_ms, 50.0);
    let ratio99 = p(&compose_ms, 99.0) / p(&local_ms, 99.0);
    report("turn, said → play command (compose, Pi host)", compose_ms);
    report("turn, said → play command (cinema up processes)", local_ms);
    println!("ratio compose / cinema up: p50 {ratio50:.2}x, p99 {ratio99:.2}x");
}
