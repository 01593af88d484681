//! room-manager restarted in the middle of a lively session: its idle clock
//! comes from the events stream, so the session is not ended as idle for
//! the time before the restart.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bus::subjects::{self, SessionEvent};
use tokio_util::sync::CancellationToken;
use wire::v1::{CreateSessionRequest, SessionEnded, SessionReply, Transcript};

const IDLE_S: u64 = 4;

fn config(nats: &testkit::NatsServer) -> room_manager::Config {
    room_manager::Config {
        nats_url: nats.url(),
        idle_timeout_s: IDLE_S,
        sweep_interval_s: 1,
        ..Default::default()
    }
}

async fn start(
    nats: &testkit::NatsServer,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), room_manager::Error>>,
) {
    let bus = nats.bus("room-manager").await;
    bus.ensure_topology().await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(room_manager::run(config(nats), bus, stop.clone()));
    (stop, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_does_not_end_a_lively_session_as_idle() {
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("test").await;
    let (stop, task) = start(&nats).await;
    let reply: SessionReply = testkit::eventually(
        Duration::from_secs(20),
        "room-manager to create a session",
        async || {
            bus.request(
                &bus::endpoints::rooms::CREATE,
                &CreateSessionRequest {
                    browser: true,
                    ..Default::default()
                },
            )
            .await
            .ok()
        },
    )
    .await;
    let sid = reply.session.unwrap().id;
    let mut ended = bus
        .client()
        .subscribe(subjects::session(&sid, SessionEvent::Ended))
        .await
        .unwrap();

    // Lively for longer than the idle timeout: a line every second.
    let say = async |n: u32| {
        let t = Transcript {
            session_id: sid.clone(),
            utterance_id: format!("u{n}"),
            text: "Still here.".into(),
            is_final: true,
            at_ms: wire::now_ms(),
            ..Default::default()
        };
        bus.publish_durable(
            subjects::session(&sid, SessionEvent::Transcript),
            &t,
            &format!("t-{sid}-{n}"),
        )
        .await
        .unwrap();
    };
    for n in 0..(IDLE_S as u32 + 2) {
        say(n).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Restarted: the new one has seen none of that.
    stop.cancel();
    task.await.unwrap().unwrap();
    let last_line = Instant::now();
    say(99).await;
    let (stop, task) = start(&nats).await;

    // It ends the session as idle, and only once the idle time has passed
    // since the last line (not since the session was created).
    let msg = tokio::time::timeout(
        Duration::from_secs(30),
        futures::StreamExt::next(&mut ended),
    )
    .await
    .expect("the session to end as idle")
    .unwrap();
    let end: SessionEnded = bus::decode_message(&msg).unwrap();
    assert!(end.reason.contains("idle"), "{}", end.reason);
    let quiet = last_line.elapsed();
    assert!(
        quiet >= Duration::from_secs(IDLE_S),
        "ended {quiet:?} after the last line, before the idle timeout of {IDLE_S} s"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}
