//! Typed requests against a real nats-server: replies, refusals, error kinds.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bus::service::{self, Reject};
use tokio_util::sync::CancellationToken;
use wire::v1::{GetClipReply, GetClipRequest, StatusRequest};

#[tokio::test]
async fn typed_requests_refusals_and_error_kinds() {
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("bus-test").await;

    // No responders is its own kind.
    let err = bus
        .request::<_, GetClipReply>(
            &bus::endpoints::clips::GET,
            &GetClipRequest {
                clip_id: "x".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, bus::Error::NoResponders { .. }), "{err}");

    let svc = service::start(bus.client(), "clip-selector", "test")
        .await
        .unwrap();
    let ep = service::endpoint(&svc, &bus::endpoints::clips::GET)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let serve = tokio::spawn(service::serve(
        ep,
        shutdown.clone(),
        4,
        |req: GetClipRequest| async move {
            if req.clip_id == "known" {
                Ok(GetClipReply {
                    clip: None,
                    media_url: "http://x/media/f".into(),
                    ..Default::default()
                })
            } else {
                Err(Reject::not_found(format!(
                    "unknown clip id {:?}",
                    req.clip_id
                )))
            }
        },
    ));

    let ok: GetClipReply = bus
        .request(
            &bus::endpoints::clips::GET,
            &GetClipRequest {
                clip_id: "known".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(ok.media_url, "http://x/media/f");
    let err = bus
        .request::<_, GetClipReply>(
            &bus::endpoints::clips::GET,
            &GetClipRequest {
                clip_id: "nope".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.remote_code(), Some(404));
    assert!(err.to_string().contains("unknown clip id"), "{err}");

    // A request of the wrong type (a caller with its own idea of the
    // endpoint: the typed ones cannot send it) is refused with 400, not
    // decoded as garbage.
    let wrong: bus::Endpoint<StatusRequest, GetClipReply> =
        bus::Endpoint::at("get", bus::endpoints::clips::GET.subject().to_string());
    let err = bus
        .request(
            &wrong,
            &StatusRequest {
                session_id: "s".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.remote_code(), Some(400), "{err}");
    // Raw garbage, too.
    let reply = bus
        .client()
        .request("cinema.clips.get", vec![0xff, 0x00].into())
        .await
        .unwrap();
    assert_eq!(
        reply
            .headers
            .unwrap()
            .get("Nats-Service-Error-Code")
            .unwrap()
            .as_str(),
        "400"
    );

    // The services API answers pings with the service's name.
    let found = service::ping_all(bus.client(), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        vec!["clip-selector"]
    );
    let stats = svc.stats().await;
    assert_eq!(stats["get"].requests, 4);
    assert_eq!(stats["get"].errors, 3);
    // The same counters over the bus ($SRV.STATS), as the dashboard reads them.
    let remote = service::stats_all(bus.client(), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(remote.len(), 1, "{remote:?}");
    assert_eq!(remote[0].name, "clip-selector");
    assert_eq!((remote[0].requests(), remote[0].errors()), (4, 3));
    assert!(remote[0].started_ms > 0 && remote[0].started_ms <= wire::now_ms());
    let get = &remote[0].endpoints[0];
    assert_eq!(
        (get.name.as_str(), get.subject.as_str()),
        ("get", "cinema.clips.get")
    );
    assert!(get.last_error.starts_with("400:"), "{}", get.last_error);

    shutdown.cancel();
    serve.await.unwrap();
}

#[tokio::test]
async fn durable_publish_deduplicates_by_message_id() {
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("bus-test").await;
    let subject = bus::subjects::pi_session("p1", "s1", bus::subjects::SessionEvent::Play);
    let cmd = wire::v1::PlayCommand {
        session_id: "s1".into(),
        command_id: "c1".into(),
        ..Default::default()
    };
    bus.publish_durable(subject.clone(), &cmd, "c1")
        .await
        .unwrap();
    bus.publish_durable(subject.clone(), &cmd, "c1")
        .await
        .unwrap();
    let mut stream = bus
        .jetstream()
        .get_stream(bus::names::EVENTS_STREAM)
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn kv_compare_and_set() {
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("bus-test").await;
    let kv = bus.kv(bus::names::STATUS_BUCKET).await.unwrap();
    let rec = wire::v1::StatusRecord {
        session_id: "s".into(),
        ..Default::default()
    };
    let rev = bus::kv_cas(&kv, "s", &rec, 0).await.unwrap().unwrap();
    assert_eq!(
        bus::kv_cas(&kv, "s", &rec, 0).await.unwrap(),
        None,
        "create twice loses"
    );
    assert!(bus::kv_cas(&kv, "s", &rec, rev).await.unwrap().is_some());
    assert_eq!(
        bus::kv_cas(&kv, "s", &rec, rev).await.unwrap(),
        None,
        "stale revision loses"
    );
    let (got, _) = bus::kv_get::<wire::v1::StatusRecord>(&kv, "s")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, rec);
}

#[tokio::test]
async fn durable_consumer_gets_every_filtered_event() {
    use bus::subjects::{SessionEvent, session};
    use futures::StreamExt;
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("bus-test").await;
    let consumer = bus
        .durable_consumer(
            bus::names::EVENTS_STREAM,
            "probe",
            vec![
                SessionEvent::Joined.wildcard(),
                SessionEvent::Transcript.wildcard(),
                SessionEvent::Ended.wildcard(),
            ],
            Duration::from_secs(5),
            3,
        )
        .await
        .unwrap();
    for (i, ev) in [
        SessionEvent::Joined,
        SessionEvent::Play,
        SessionEvent::Transcript,
        SessionEvent::Ended,
    ]
    .into_iter()
    .enumerate()
    {
        let msg = wire::v1::SessionEnded {
            session_id: "s".into(),
            ..Default::default()
        };
        let subject = if ev.on_pi() {
            bus::subjects::pi_session("p", "s", ev)
        } else {
            session("s", ev)
        };
        bus.publish_durable(subject, &msg, &format!("m{i}"))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    let mut messages = consumer.messages().await.unwrap();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), messages.next()).await
    {
        got.push(m.subject.to_string());
        m.ack().await.unwrap();
    }
    assert_eq!(
        got,
        vec![
            "cinema.pi.p.session.s.joined",
            "cinema.session.s.transcript",
            "cinema.session.s.ended"
        ]
    );
}

/// On a real server every stream and bucket carries its limits, and one
/// made by an older version (unbounded) is brought to them.
#[tokio::test]
async fn streams_and_buckets_are_bounded() {
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("bus-test").await;
    // As an older hub left them: the sessions bucket and the utterances
    // stream without limits.
    let sessions = format!("KV_{}", bus::names::SESSIONS_BUCKET);
    for name in [sessions.as_str(), bus::names::UTTERANCES_STREAM] {
        let mut s = bus.jetstream().get_stream(name).await.unwrap();
        let mut c = s.info().await.unwrap().config.clone();
        c.max_bytes = -1;
        c.max_age = Duration::ZERO;
        c.max_message_size = -1;
        bus.jetstream().update_stream(c).await.unwrap();
    }
    bus.ensure_topology().await.unwrap();
    bus.ensure_status_bucket().await.unwrap();
    let streams = [bus::names::EVENTS_STREAM, bus::names::UTTERANCES_STREAM]
        .into_iter()
        .map(|s| (s.to_string(), s))
        .chain(
            bus::names::BUCKETS
                .into_iter()
                .map(|b| (format!("KV_{b}"), b)),
        );
    for (stream, name) in streams {
        let mut s = bus.jetstream().get_stream(&stream).await.unwrap();
        let c = s.info().await.unwrap().config.clone();
        let want = bus::limits::of(name);
        assert_eq!(
            (c.max_bytes, c.max_age, c.max_message_size),
            (want.max_bytes, want.max_age, want.max_message_size),
            "{stream}"
        );
    }
}
