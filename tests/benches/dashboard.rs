//! Dashboard gateway benchmark over the whole stack (release build, real
//! NATS): a bus event published → received by an SSE client of
//! `/api/events` (idle, and with 500 other clients connected); a bus event
//! → its entry in the dashboard page of headless Chromium (in the DOM, and
//! the next frame drawn, over WebDriver); requests/s on
//! `GET /conversation-status/{id}` from 8 concurrent clients; 500 SSE
//! clients held at once (three rounds), every one receiving an event, with the gateway's
//! memory before, during and after.
//!
//!     cargo bench -p tests --bench dashboard
//!     CINEMA_BENCH_EVENTS=200 CINEMA_BENCH_CLIENTS=100 CINEMA_BENCH_SECS=5 cargo bench -p tests --bench dashboard
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bus::subjects::{self, SessionEvent};
use tests::webdriver::{Browser, Launch};
use tests::{World, report, rss_kib};
use wire::v1::{ConversationEvent, Reasoning, conversation_event};

/// An SSE client of the gateway, reading raw chunks.
struct SseClient {
    resp: reqwest::Response,
    seen: String,
}

impl SseClient {
    async fn open(http: &reqwest::Client, url: &str) -> SseClient {
        let resp = http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        SseClient {
            resp,
            seen: String::new(),
        }
    }

    /// Reads until `needle` has arrived; keeps only what follows it.
    async fn wait_for(&mut self, needle: &str) {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(i) = self.seen.find(needle) {
                    self.seen.drain(..i + needle.len());
                    return;
                }
                let chunk = self.resp.chunk().await.unwrap().expect("stream open");
                self.seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{needle:?} never arrived"));
    }
}

/// `cinema_sse_clients{stream="events"}` from the gateway's metrics.
async fn sse_gauge(http: &reqwest::Client, base: &str) -> i64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("cinema_sse_clients{stream=\"events\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

/// A conversation event carrying `marker`, as the director would publish it.
async fn publish_marker(w: &World, sid: &str, marker: &str) {
    let ev = ConversationEvent {
        session_id: sid.into(),
        turn: 0,
        at_ms: wire::now_ms(),
        kind: Some(conversation_event::Kind::Reasoning(Reasoning {
            text: marker.into(),
        })),
    };
    w.bus
        .publish(subjects::session(sid, SessionEvent::Conversation), &ev)
        .await
        .unwrap();
}

/// Event published → read by one SSE client, `n` times in a row.
async fn event_latency(w: &World, http: &reqwest::Client, n: usize, tag: &str) -> Vec<f64> {
    let sid = format!("bench-{tag}");
    let mut client = SseClient::open(http, &format!("{}/api/events?session={sid}", w.base)).await;
    // The stream is live once a first event comes through.
    publish_marker(w, &sid, "warm-up").await;
    client.wait_for("warm-up").await;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let marker = format!("m-{tag}-{i}\"");
        let t0 = Instant::now();
        publish_marker(w, &sid, &marker[..marker.len() - 1]).await;
        client.wait_for(&marker).await;
        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    samples
}

/// Bus event published → its entry in the dashboard page, in headless
/// Chromium over WebDriver: (DOM insertion, next frame) latencies in ms.
/// The page records (wall clock, `performance.timeOrigin + now()`) when each
/// marker's entry is put into the DOM and when the next frame after it is
/// drawn.
async fn page_latency(w: &World, n: usize) -> (Vec<f64>, Vec<f64>) {
    let shots = std::env::temp_dir().join("cinema-bench-dashboard");
    let page = Browser::launch(Launch {
        viewport: (1280, 860),
        flags: &[],
        shots: &shots,
        prompt_answer: "",
    })
    .await;
    page.goto(&w.base).await;
    page.wait_for("#live.on", None, Duration::from_secs(15))
        .await;
    page.eval(
        "window.benchDom = {};
         window.benchFrame = {};
         const re = new RegExp(`${arguments[0]}[0-9]+`);
         new MutationObserver((records) => {
           const now = performance.timeOrigin + performance.now();
           for (const r of records) {
             for (const n of r.addedNodes) {
               const m = re.exec(n.textContent || '');
               if (!m || window.benchDom[m[0]]) continue;
               window.benchDom[m[0]] = now;
               requestAnimationFrame(() => (window.benchFrame[m[0]] = performance.timeOrigin + performance.now()));
             }
           }
         }).observe(document.body, { childList: true, subtree: true });",
        vec![serde_json::json!("m-page-")],
    )
    .await;
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let marker = format!("m-page-{i}");
        sent.push(wire::now_ms() as f64);
        publish_marker(w, "bench-page", &marker).await;
        // Events arrive one at a time, as a conversation's would.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    page.wait_js(
        "every marker in the page",
        "return Object.keys(window.benchFrame).length >= arguments[0];",
        vec![serde_json::json!(n)],
        Duration::from_secs(120),
        Duration::from_millis(100),
    )
    .await;
    let seen = page
        .eval(
            "return { dom: window.benchDom, frame: window.benchFrame };",
            vec![],
        )
        .await;
    page.close().await;
    let latencies = |kind: &str| -> Vec<f64> {
        (0..n)
            .map(|i| seen[kind][format!("m-page-{i}")].as_f64().unwrap() - sent[i])
            .collect()
    };
    (latencies("dom"), latencies("frame"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events = tests::env_or("CINEMA_BENCH_EVENTS", 1000);
    let clients = tests::env_or("CINEMA_BENCH_CLIENTS", 500);
    let secs = tests::env_or("CINEMA_BENCH_SECS", 10);
    let w = World::start_with(&[("RUST_LOG", "warn")]).await;
    let gateway = w.stack().pid("dashboard-gateway").unwrap() as u32;
    let http = reqwest::Client::new();

    // 1. Event → SSE client, nothing else connected.
    let idle = event_latency(&w, &http, events, "idle").await;

    // 1b. Event → the dashboard page in Chromium (the operator's view).
    let (page_dom, page_frame) = page_latency(&w, events.min(300)).await;

    // 2. A real conversation's status, read by 8 clients at once.
    let sid = w.answered_session().await;
    let url = format!("{}/conversation-status/{sid}", w.base);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs as u64);
    let started = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let http = reqwest::Client::new();
            let url = url.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut took = Vec::new();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let r = http.get(&url).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap();
                    took.push(t0.elapsed().as_secs_f64() * 1000.0);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                took
            })
        })
        .collect();
    let mut status_ms = Vec::new();
    for wk in workers {
        status_ms.extend(wk.await.unwrap());
    }
    let wall = started.elapsed().as_secs_f64();
    let requests = done.load(Ordering::Relaxed);
    let (code, _) = w.post(&format!("/api/sessions/{sid}/end"), None).await;
    assert_eq!(code, 200);

    // 3. Many SSE clients held at once, three times: memory must settle at
    // one level (no growth round after round); every client gets every event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(gateway);
    let mut rounds = Vec::new();
    let mut busy = Vec::new();
    for round in 0..3 {
        let mut held = Vec::with_capacity(clients);
        let t_open = Instant::now();
        for _ in 0..clients {
            // Each client its own connection, as browsers would be.
            let c = reqwest::Client::new();
            held.push(SseClient::open(&c, &format!("{}/api/events", w.base)).await);
        }
        let open_s = t_open.elapsed().as_secs_f64();
        let t_fan = Instant::now();
        let marker = format!("fan-out-{round}");
        publish_marker(&w, "bench-fanout", &marker).await;
        for c in &mut held {
            c.wait_for(&marker).await;
        }
        let fan_out_ms = t_fan.elapsed().as_secs_f64() * 1000.0;
        let rss_held = rss_kib(gateway);
        let connected = sse_gauge(&http, &w.base).await;
        if round == 0 {
            // Latency again, with every held client also receiving each event.
            busy = event_latency(&w, &http, events.min(300), "busy").await;
        }
        drop(held);
        // The gateway notices a closed stream when it next writes to it (an
        // event or the 15 s keep-alive).
        let t_drop = Instant::now();
        publish_marker(&w, "bench-fanout", "after-drop").await;
        testkit::eventually(
            Duration::from_secs(40),
            "the clients counted out",
            async || (sse_gauge(&http, &w.base).await == 0).then_some(()),
        )
        .await;
        let gone_s = t_drop.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(500)).await;
        rounds.push((
            open_s,
            fan_out_ms,
            connected,
            rss_held,
            gone_s,
            rss_kib(gateway),
        ));
    }
    println!();
    println!("dashboard gateway (release build, 2 cores, real NATS and services)");
    report("bus event → SSE client (no other client)", idle);
    report("bus event → in the page's DOM (Chromium)", page_dom);
    report("bus event → next frame drawn (Chromium)", page_frame);
    report(
        &format!("bus event → SSE client ({clients} others held)"),
        busy,
    );
    println!(
        "GET /conversation-status/{{id}}, 8 clients  {:.0} requests/s ({requests} in {wall:.1} s)",
        requests as f64 / wall
    );
    report("  per request", status_ms);
    println!(
        "gateway RSS before the SSE clients          {:.1} MiB",
        rss_before as f64 / 1024.0
    );
    for (i, (open_s, fan_out_ms, connected, rss_held, gone_s, rss_after)) in
        rounds.iter().enumerate()
    {
        println!(
            "round {}: {connected} SSE clients connected in {open_s:.1} s; one event reached all in {fan_out_ms:.1} ms; RSS {:.1} MiB (+{:.1} KiB per client); all counted out {gone_s:.1} s after closing, RSS then {:.1} MiB",
            i + 1,
            *rss_held as f64 / 1024.0,
            (*rss_held as f64 - rss_before as f64) / clients.max(1) as f64,
            *rss_after as f64 / 1024.0,
        );
    }
    w.stop().await;
}
