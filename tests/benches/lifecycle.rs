//! Session lifecycle benchmark over the real binaries (release build):
//! create → client joined → greeting playing latency, then N create/end
//! cycles checking for leaked processes, leaked KV keys and spawner memory.
//!
//!     cargo bench -p tests --bench lifecycle            (1,000 cycles)
//!     CINEMA_BENCH_CYCLES=100 cargo bench -p tests --bench lifecycle
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bus::subjects::SessionEvent;
use tests::{World, next, report, rss_kib};
use wire::v1::{ClientJoined, PlaybackEvent, PlaybackState};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cycles: usize = std::env::var("CINEMA_BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let w = World::start_with(&[("RUST_LOG", "warn")]).await;
    let mut joins = w.subscribe(SessionEvent::Joined).await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let spawner = w.stack().pid("pi-spawner").unwrap();
    let pi_client = testkit::bin("pi-client").display().to_string();

    // Warm up once (first mpv start, page cache), then measure.
    let mut joined_ms = Vec::new();
    let mut playing_ms = Vec::new();
    let mut end_ms = Vec::new();
    let mut rss_before = 0;
    let started = Instant::now();
    for i in 0..=cycles {
        if i == 1 {
            rss_before = rss_kib(spawner as u32);
        }
        let t0 = Instant::now();
        let body = w.connect().await;
        let sid = body["identifier"].as_str().unwrap().to_string();
        next(&mut joins, "the join", |j: &ClientJoined| {
            j.session_id == sid
        })
        .await;
        let t_joined = t0.elapsed();
        next(&mut playback, "the greeting", |e: &PlaybackEvent| {
            e.session_id == sid && e.state() == PlaybackState::Started
        })
        .await;
        let t_playing = t0.elapsed();
        let t1 = Instant::now();
        let (code, _) = w.post(&format!("/api/sessions/{sid}/end"), None).await;
        assert_eq!(code, 200);
        if i > 0 {
            joined_ms.push(t_joined.as_secs_f64() * 1000.0);
            playing_ms.push(t_playing.as_secs_f64() * 1000.0);
            end_ms.push(t1.elapsed().as_secs_f64() * 1000.0);
        }
        if i % 100 == 0 {
            eprintln!(
                "{i}/{cycles} cycles, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let rss_after = rss_kib(spawner as u32);
    let wall = started.elapsed();

    // Leaks: processes and keys.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leaked_clients = testkit::pids_matching(&pi_client).len();
    let leaked_mpv = testkit::pids_matching("cinema-mpv-").len();
    let (code, cleaned) = w.delete("/api/cleanup-old-sessions?older_than_s=0").await;
    assert_eq!(code, 200, "{cleaned}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut leaked_keys = 0;
    for bucket in [
        bus::names::SESSIONS_BUCKET,
        bus::names::STATUS_BUCKET,
        bus::names::CONVERSATIONS_BUCKET,
    ] {
        let keys = bus::kv_keys(&w.bus.kv(bucket).await.unwrap())
            .await
            .unwrap();
        println!("keys left in {bucket:<22} {}", keys.len());
        leaked_keys += keys.len();
    }

    println!();
    println!(
        "session lifecycle, {cycles} create/end cycles in {:.1} s (release build, 2 cores)",
        wall.as_secs_f64()
    );
    report("create → client joined", joined_ms);
    report("create → greeting playing", playing_ms);
    report("end (client + mpv stopped)", end_ms);
    println!("cleanup removed                    {}", cleaned["removed"]);
    println!("leaked pi-client processes         {leaked_clients}");
    println!("leaked mpv processes               {leaked_mpv}");
    println!("leaked KV keys                     {leaked_keys}");
    println!(
        "pi-spawner RSS                     before {:.1} MiB, after {:.1} MiB (ratio {:.2})",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_after as f64 / rss_before.max(1) as f64
    );
    w.stop().await;
}
