//! Soak under chaos: N sessions on the simulated Pi, each visitor typing a
//! line every few seconds, while a chaos loop kills -9 a random service
//! every 30 s (and nats-server once, stopped and started on its port).
//! Prints lines said, answered, recorded; duplicate plays; leaked processes
//! and keys; each service's memory at start and end; turn latency (said →
//! play command) p50/p95/p99 against one quiet session, and the ratio. Then
//! a ramp without chaos: the most sessions held at p95 ≤ 2× the quiet one.
//!
//!     cargo bench -p tests --bench soak
//!     CINEMA_BENCH_SOAK_S=600 CINEMA_BENCH_SESSIONS=4 CINEMA_BENCH_RAMP_MAX=8 \
//!         cargo bench -p tests --bench soak
//!
//! Lines are typed (`POST /api/sessions/{id}/say`), so the stt model's CPU
//! does not decide what 2 cores hold; the director, the record, delivery
//! to the Pi and playback in mpv are all real.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bus::subjects::SessionEvent;
use tests::{World, env_or, percentile, rss_kib};
use wire::v1::{PlayCommand, PlaybackEvent, PlaybackState};

const LINES: [&str; 6] = [
    "Where is the station?",
    "Can you help me?",
    "Thank you very much.",
    "Hello there!",
    "Good morning.",
    "Is anybody home?",
];

/// What the visitors said and what came of it.
#[derive(Default)]
struct Tally {
    /// command id → when its line was said.
    said: HashMap<String, (String, Instant)>,
    /// command id → said → play command, ms.
    answered: HashMap<String, f64>,
    /// command id → playback starts on the Pi.
    started: HashMap<String, u32>,
    /// Lines refused (their session had ended: its Pi's client died).
    refused: u32,
    /// Every session the visitors used, the first ones and the ones they
    /// started when theirs ended.
    sessions: Vec<String>,
}

fn summary(name: &str, mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        println!("{name:<44} no samples");
        return (0.0, 0.0);
    }
    let (p50, p95, p99) = (
        percentile(&ms, 50.0),
        percentile(&ms, 95.0),
        percentile(&ms, 99.0),
    );
    println!(
        "{name:<44} n={:<5} p50 {p50:>7.0} ms  p95 {p95:>7.0} ms  p99 {p99:>7.0} ms",
        ms.len()
    );
    (p50, p95)
}

/// Sessions for `seconds`, each saying a line every `every`; returns the
/// tally. With `chaos`, a service is killed every `chaos_every`.
async fn run(
    w: &mut World,
    sessions: usize,
    seconds: u64,
    every: Duration,
    chaos_every: Option<Duration>,
) -> (Arc<Mutex<Tally>>, Vec<String>) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    // Watch play commands and playback for every session.
    let mut plays = w.subscribe(SessionEvent::Play).await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let watch = {
        let tally = tally.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(m) = futures::StreamExt::next(&mut plays) => {
                        if let Ok(p) = bus::decode_message::<PlayCommand>(&m) {
                            let mut t = tally.lock().unwrap();
                            if let Some((_, at)) = t.said.get(&p.command_id).cloned() {
                                t.answered
                                    .entry(p.command_id)
                                    .or_insert(at.elapsed().as_secs_f64() * 1000.0);
                            }
                        }
                    }
                    Some(m) = futures::StreamExt::next(&mut playback) => {
                        if let Ok(e) = bus::decode_message::<PlaybackEvent>(&m)
                            && e.state() == PlaybackState::Started
                        {
                            *tally.lock().unwrap().started.entry(e.command_id).or_default() += 1;
                        }
                    }
                    else => return,
                }
            }
        })
    };
    let mut sids = Vec::new();
    for _ in 0..sessions {
        let body = w.connect().await;
        sids.push(body["identifier"].as_str().unwrap().to_string());
    }
    tally.lock().unwrap().sessions.extend(sids.iter().cloned());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut visitors = Vec::new();
    for (k, first) in sids.iter().enumerate() {
        let (http, base, tally) = (reqwest::Client::new(), w.base.clone(), tally.clone());
        let mut sid = first.clone();
        visitors.push(tokio::spawn(async move {
            // Spread the visitors over the period.
            tokio::time::sleep(every.mul_f64(k as f64 / sessions.max(1) as f64)).await;
            let mut n = 0usize;
            while Instant::now() < deadline {
                let said_at = Instant::now();
                let r = http
                    .post(format!("{base}/api/sessions/{sid}/say"))
                    .json(&serde_json::json!({"text": LINES[(n + k) % LINES.len()]}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        let utterance = body["utterance_id"].as_str().unwrap_or_default();
                        tally.lock().unwrap().said.insert(
                            bus::ids::turn_command(&sid, utterance),
                            (sid.clone(), said_at),
                        );
                    }
                    _ => {
                        // The session is over (its client died with a
                        // killed service): the visitor starts another.
                        tally.lock().unwrap().refused += 1;
                        let connected = http
                            .post(format!("{base}/api/connect"))
                            .json(&serde_json::json!({}))
                            .send()
                            .await;
                        if let Ok(r) = connected
                            && r.status().is_success()
                            && let Ok(body) = r.json::<serde_json::Value>().await
                            && let Some(new) = body["identifier"].as_str()
                        {
                            sid = new.to_string();
                            tally.lock().unwrap().sessions.push(sid.clone());
                        }
                    }
                }
                n += 1;
                tokio::time::sleep(every).await;
            }
        }));
    }
    if let Some(chaos_every) = chaos_every {
        let services = cinema::up::SERVICES;
        let mut round = 0u64;
        let mut nats_done = false;
        while Instant::now() + chaos_every < deadline {
            tokio::time::sleep(chaos_every).await;
            round += 1;
            if !nats_done && round == 3 {
                eprintln!("chaos: nats-server stopped and started");
                w.nats.stop();
                tokio::time::sleep(Duration::from_secs(2)).await;
                w.nats.restart();
                nats_done = true;
                continue;
            }
            // A different service each round, in a fixed shuffled order.
            let name = services[((round * 5) % services.len() as u64) as usize];
            if let Some(pid) = w.stack().pid(name) {
                eprintln!("chaos: kill -9 {name} ({pid})");
                tests::kill9(pid);
            }
        }
    }
    for v in visitors {
        let _ = v.await;
    }
    // Answers still on their way.
    tokio::time::sleep(Duration::from_secs(20)).await;
    watch.abort();
    (tally, sids)
}

fn memory(w: &World) -> Vec<(&'static str, u64)> {
    cinema::up::SERVICES
        .iter()
        .map(|s| (*s, w.stack().pid(s).map_or(0, |p| rss_kib(p as u32))))
        .collect()
}

fn count_processes(bin: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("cmdline"))
                .is_ok_and(|c| c.split('\0').next().is_some_and(|a| a.ends_with(bin)))
        })
        .count()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let soak_s: u64 = env_or("CINEMA_BENCH_SOAK_S", 600);
    let sessions: usize = env_or("CINEMA_BENCH_SESSIONS", 3);
    let every = Duration::from_secs(env_or("CINEMA_BENCH_EVERY_S", 5));
    let chaos = Duration::from_secs(env_or("CINEMA_BENCH_CHAOS_S", 30));
    let ramp_max: usize = env_or("CINEMA_BENCH_RAMP_MAX", 8);
    let ramp_s: u64 = env_or("CINEMA_BENCH_RAMP_S", 60);
    let max = (sessions.max(ramp_max) + 1).to_string();
    let mut w = World::start_with(&[
        ("RUST_LOG", "warn"),
        ("CINEMA_PI_SPAWNER_MAX_SESSIONS", max.as_str()),
        ("CINEMA_ROOM_MANAGER_IDLE_TIMEOUT_S", "3600"),
    ])
    .await;

    // One quiet session: the reference.
    let (quiet, sids) = run(&mut w, 1, 60, every, None).await;
    let quiet_ms: Vec<f64> = quiet.lock().unwrap().answered.values().copied().collect();
    drop(quiet);
    let (_, quiet_p95) = summary("quiet: 1 session, said → play command", quiet_ms);
    for sid in sids {
        let _ = w.post(&format!("/api/sessions/{sid}/end"), None).await;
    }

    // The soak.
    let before = memory(&w);
    let clients_before = count_processes("pi-client");
    let started = Instant::now();
    let (tally, _) = run(&mut w, sessions, soak_s, every, Some(chaos)).await;
    let sids = tally.lock().unwrap().sessions.clone();
    let (said, refused, answered_ms, doubled) = {
        let t = tally.lock().unwrap();
        (
            t.said.len(),
            t.refused,
            t.answered.values().copied().collect::<Vec<f64>>(),
            t.started.values().filter(|n| **n > 1).count(),
        )
    };
    println!(
        "soak: {sessions} sessions for {} s, a line every {every:?}, a kill every {chaos:?}",
        started.elapsed().as_secs()
    );
    let answered = answered_ms.len();
    println!(
        "lines said {said}, answered {answered} ({:.1} %); {refused} refused by an ended session, whose visitor started another ({} sessions in all)",
        100.0 * answered as f64 / said.max(1) as f64,
        sids.len()
    );
    println!("plays started twice or more on the Pi: {doubled}");
    let (_, soak_p95) = summary(
        &format!("soak: {sessions} sessions, said → play command"),
        answered_ms,
    );
    println!(
        "p95 ratio soak / quiet: {:.2}",
        soak_p95 / quiet_p95.max(1.0)
    );
    let mut recorded = 0usize;
    for sid in &sids {
        let (code, s) = w.get(&format!("/conversation-status/{sid}")).await;
        if code == 200 {
            recorded += s["context"]["messages"]
                .as_array()
                .map_or(0, |m| m.iter().filter(|m| m["role"] == "user").count());
        }
    }
    println!("lines in the records: {recorded} of {said} said");
    for sid in &sids {
        let _ = w.post(&format!("/api/sessions/{sid}/end"), None).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "pi-client processes: {clients_before} before, {} after every session ended",
        count_processes("pi-client")
    );
    let sessions_bucket = w.bus.kv(bus::names::SESSIONS_BUCKET).await.unwrap();
    let live: usize = {
        let mut n = 0;
        for key in bus::kv_keys(&sessions_bucket).await.unwrap() {
            if let Ok(Some((s, _))) = bus::kv_get::<wire::v1::Session>(&sessions_bucket, &key).await
                && matches!(
                    s.state(),
                    wire::v1::SessionState::Waiting | wire::v1::SessionState::Active
                )
            {
                n += 1;
            }
        }
        n
    };
    println!("sessions still live after ending them all: {live}");
    let after = memory(&w);
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        println!(
            "memory {name:<18} {:>7} KiB at start, {:>7} KiB at end",
            a, b
        );
    }

    // The ramp: the most sessions whose p95 stays within 2× the quiet one.
    let mut held = 0;
    for n in 1..=ramp_max {
        let (t, sids) = run(&mut w, n, ramp_s, every, None).await;
        let ms: Vec<f64> = t.lock().unwrap().answered.values().copied().collect();
        let (_, p95) = summary(&format!("ramp: {n} sessions, said → play command"), ms);
        for sid in sids {
            let _ = w.post(&format!("/api/sessions/{sid}/end"), None).await;
        }
        if p95 > 2.0 * quiet_p95 {
            break;
        }
        held = n;
    }
    println!("most concurrent sessions at p95 ≤ 2× one quiet session's: {held}");
    w.stop().await;
}
