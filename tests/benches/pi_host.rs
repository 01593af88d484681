//! The Pi as its own host, measured (the compose hub and its demo Pi host:
//! Debian 13 with mpv 0.40, then Debian 12 with mpv 0.35): the Pi's memory
//! (pi-spawner and pi-client; mpv and the leaf nats-server apart); clip
//! start (the play command made → the Pi's playback started, which is
//! mpv's playback-restart) on both mpv versions; a play command's delivery
//! after the Pi's network was cut for 5 s; and the time for the Pi to be
//! back in a conversation (a new session's greeting playing) after a 60 s
//! cut, which ends its session.
//!
//!     cargo bench -p tests --bench pi_host
//!     CINEMA_BENCH_TURNS=20 CINEMA_BENCH_CUTS=5 cargo bench -p tests --bench pi_host
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use tests::hub::{Hub, LINE, READY, play_command, playback_of};
use tests::report;
use wire::v1::{PlaybackEvent, PlaybackState};

/// RSS in MiB of each program in the Pi host (by its command name).
fn pi_memory(hub: &Hub) -> Vec<(String, f64)> {
    let out = tests::hub::docker(&[
        "exec",
        &hub.pi_container(),
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do echo \"$(cat $p/comm 2>/dev/null) $(grep VmRSS $p/status 2>/dev/null | tr -s ' ' | cut -d' ' -f2)\"; done",
    ]);
    let mut by_name: std::collections::BTreeMap<String, f64> = Default::default();
    for line in out.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(kib)) = (parts.next(), parts.next()) else {
            continue;
        };
        *by_name.entry(name.to_string()).or_default() += kib.parse::<f64>().unwrap_or(0.0) / 1024.0;
    }
    by_name.into_iter().collect()
}

/// The playback event of `command` in `state`; any other end is a failure.
async fn playback(
    hub: &Hub,
    events: &mut bus::async_nats::Subscriber,
    command: &str,
    state: PlaybackState,
) -> PlaybackEvent {
    loop {
        let e = playback_of(events, command, Duration::from_secs(90), hub).await;
        if e.state() == state {
            return e;
        }
        if e.state() != PlaybackState::Started {
            panic!("{command}: {:?} {}", e.state(), e.error);
        }
    }
}

/// `n` lines in `sid`: each answer's play command made → started on the
/// Pi, in ms; the next line after the clip's end.
async fn clip_starts(hub: &Hub, bus: &bus::Bus, sid: &str, n: usize) -> Vec<f64> {
    let (mut plays, mut events) = hub.watch_plays(bus).await;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        hub.say(sid, LINE).await;
        let p = play_command(&mut plays, sid, "an answer", |p| !p.greeting, hub).await;
        let started = playback(hub, &mut events, &p.command_id, PlaybackState::Started).await;
        out.push((started.at_ms - p.at_ms) as f64);
        playback(hub, &mut events, &p.command_id, PlaybackState::Finished).await;
    }
    out
}

async fn greeted(hub: &Hub, bus: &bus::Bus) -> String {
    let (mut plays, mut events) = hub.watch_plays(bus).await;
    let sid = hub.connect().await;
    let greeting = play_command(&mut plays, &sid, "the greeting", |p| p.greeting, hub).await;
    playback(
        hub,
        &mut events,
        &greeting.command_id,
        PlaybackState::Finished,
    )
    .await;
    sid
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = tests::env_or("CINEMA_BENCH_TURNS", 10);
    let cuts = tests::env_or("CINEMA_BENCH_CUTS", 3);
    let mut hub = Hub::new();
    hub.up();
    hub.ready(READY).await;
    let bus = hub.bus().await;
    let sid = greeted(&hub, &bus).await;
    let memory = pi_memory(&hub);

    // Clip start on mpv 0.40 (Debian 13).
    let trixie = clip_starts(&hub, &bus, &sid, n).await;

    // Delivery after a 5 s cut: the link restored → the answer started.
    let (mut plays, mut events) = hub.watch_plays(&bus).await;
    let mut after_cut = Vec::new();
    for _ in 0..cuts {
        hub.cut_pi();
        let cut = Instant::now();
        hub.say(&sid, LINE).await;
        let p = play_command(&mut plays, &sid, "an answer", |p| !p.greeting, &hub).await;
        tokio::time::sleep(Duration::from_secs(5).saturating_sub(cut.elapsed())).await;
        hub.restore_pi();
        let back = Instant::now();
        playback(&hub, &mut events, &p.command_id, PlaybackState::Started).await;
        after_cut.push(back.elapsed().as_secs_f64() * 1000.0);
        playback(&hub, &mut events, &p.command_id, PlaybackState::Finished).await;
    }

    // Back in a conversation after a 60 s cut (the session ends meanwhile):
    // the link restored → a new session's greeting finished.
    hub.cut_pi();
    tokio::time::sleep(Duration::from_secs(60)).await;
    hub.restore_pi();
    let back = Instant::now();
    let sid2 = greeted(&hub, &bus).await;
    let back_s = back.elapsed().as_secs_f64();

    // Clip start on mpv 0.35 (Debian 12).
    hub.post(&format!("/api/sessions/{sid2}/end"), serde_json::json!({}))
        .await;
    hub.env
        .push(("CINEMA_DEMO_PI_VARIANT".into(), "-bookworm".into()));
    hub.compose(&["--profile", "demo-pi", "up", "-d", "demo-pi"]);
    let sid3 = greeted(&hub, &bus).await;
    let bookworm = clip_starts(&hub, &bus, &sid3, n).await;
    drop(hub);

    println!();
    println!("the Pi as its own host (compose demo Pi, 2 cores)");
    println!("Pi memory (RSS):");
    for (name, mib) in &memory {
        println!("  {name:<16} {mib:>7.1} MiB");
    }
    let ours: f64 = memory
        .iter()
        .filter(|(n, _)| n == "pi-spawner" || n == "pi-client")
        .map(|(_, m)| m)
        .sum();
    println!("  pi-spawner + pi-client: {ours:.1} MiB (mpv and nats-server apart)");
    let p50 = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        tests::percentile(&s, 50.0)
    };
    report(
        "clip start, play command → started (mpv 0.40, Debian 13)",
        trixie.clone(),
    );
    report(
        "clip start, play command → started (mpv 0.35, Debian 12)",
        bookworm.clone(),
    );
    println!(
        "ratio mpv 0.35 / 0.40: p50 {:.2}x",
        p50(&bookworm) / p50(&trixie)
    );
    report(
        "a 5 s cut restored → the answer started on the Pi",
        after_cut,
    );
    println!("a 60 s cut restored → a new session's greeting finished: {back_s:.1} s");
}
