//! stt over real parts: a private nats-server, the stt binary, the tiny.en
//! Whisper model from `../shared/models`, speech from espeak-ng.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::time::Duration;

use bus::async_nats::jetstream::consumer::pull;
use bus::subjects::{self, SessionEvent};
use futures::StreamExt;
use testkit::NatsServer;
use tests::{
    Stt, next, recorded, send_utterance, speech, stt_ready, utterance, whisper_model,
    word_error_rate,
};
use wire::v1::{Transcript, TranscriptSource};

const SENTENCE: &str = "Where is the train station?";

async fn transcript_sub(bus: &bus::Bus, sid: &str) -> bus::async_nats::Subscriber {
    bus.client()
        .subscribe(subjects::session(sid, SessionEvent::Transcript))
        .await
        .unwrap()
}

#[tokio::test]
async fn speech_is_transcribed() {
    let nats = NatsServer::start();
    let bus = nats.bus("test").await;
    let _stt = Stt::spawn(&nats.url(), &[]);
    stt_ready(&bus, 1).await;

    let mut sub = transcript_sub(&bus, "s-speech").await;
    let u = utterance("s-speech", "u-1", &speech(SENTENCE));
    let sent = wire::now_ms();
    send_utterance(&bus, &u).await;
    let t: Transcript = next(&mut sub, "the transcript", |_: &Transcript| true).await;

    let wer = word_error_rate(SENTENCE, &t.text);
    assert!(wer <= 0.25, "WER {wer} for {:?}", t.text);
    assert_eq!(
        (t.session_id.as_str(), t.utterance_id.as_str()),
        ("s-speech", "u-1")
    );
    assert!(t.is_final);
    assert_eq!(t.source, TranscriptSource::Speech as i32);
    assert_eq!(t.language, "en");
    assert!(t.inference_ms > 0, "{t:?}");
    assert!(t.at_ms >= sent, "{t:?}");
    assert!(t.queue_wait_ms < 10_000, "{t:?}");
    assert_eq!(t.speech_end_ms, u.speech_end_ms);
    assert!(t.no_speech_prob < 0.6, "{t:?}");
}

#[tokio::test]
async fn silence_gives_an_empty_transcript() {
    let nats = NatsServer::start();
    let bus = nats.bus("test").await;
    let _stt = Stt::spawn(&nats.url(), &[]);
    stt_ready(&bus, 1).await;

    let mut sub = transcript_sub(&bus, "s-quiet").await;
    send_utterance(&bus, &utterance("s-quiet", "u-silence", &[0; 32_000])).await;
    let t: Transcript = next(&mut sub, "the transcript", |_: &Transcript| true).await;
    assert_eq!(t.utterance_id, "u-silence");
    assert_eq!(t.text, "", "{t:?}");
    assert!(t.is_final);
    // Whisper's own estimate, over the threshold.
    assert!(t.no_speech_prob > 0.6 && t.no_speech_prob <= 1.0, "{t:?}");
}

#[tokio::test]
async fn bad_input_is_refused_and_the_worker_goes_on() {
    let nats = NatsServer::start();
    let bus = nats.bus("test").await;
    let mut stt = Stt::spawn(&nats.url(), &[("CINEMA_STT_MAX_UTTERANCE_S", "5")]);
    stt_ready(&bus, 1).await;
    let sid = "s-bad";
    let good = utterance(sid, "u-good", &[0; 16_000]);

    let mut odd = good.clone();
    odd.utterance_id = "u-odd".into();
    odd.pcm.push(7);
    let mut narrow = good.clone();
    narrow.utterance_id = "u-8k".into();
    narrow.sample_rate = 8_000;
    let mut empty = good.clone();
    empty.utterance_id = "u-empty".into();
    empty.pcm.clear();
    let mut long = good.clone();
    long.utterance_id = "u-long".into();
    long.pcm = vec![0; 6 * 16_000 * 2];
    for u in [&odd, &narrow, &empty, &long] {
        send_utterance(&bus, u).await;
    }
    // Not a protobuf at all, and a message of another type.
    bus.jetstream()
        .publish(
            subjects::utterance("test-pi", sid),
            b"\xff\xff\xff\xff\xff\xff not a protobuf".to_vec().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let (headers, payload) = bus::encode(&Transcript::default());
    bus.jetstream()
        .publish_with_headers(subjects::utterance("test-pi", sid), headers, payload)
        .await
        .unwrap()
        .await
        .unwrap();

    // A good utterance after all that is still transcribed.
    let mut sub = transcript_sub(&bus, sid).await;
    send_utterance(&bus, &utterance(sid, "u-good", &speech(SENTENCE))).await;
    let t: Transcript = next(&mut sub, "the good transcript", |_: &Transcript| true).await;
    assert_eq!(t.utterance_id, "u-good");
    assert!(word_error_rate(SENTENCE, &t.text) <= 0.25, "{t:?}");

    assert!(stt.alive(), "stt died:\n{}", stt.log());
    let recorded: Vec<Transcript> =
        recorded(&bus, subjects::session(sid, SessionEvent::Transcript)).await;
    let ids: Vec<&str> = recorded.iter().map(|t| t.utterance_id.as_str()).collect();
    assert_eq!(ids, ["u-good"]);

    let log = stt.log();
    for reason in [
        "odd number of bytes (32001)",
        "sample rate 8000 Hz is not accepted",
        "pcm is empty",
        "over the 5 s limit",
        "undecodable utterance: cannot decode cinema.v1.Utterance",
        "expected a cinema.v1.Utterance message, got cinema.v1.Transcript",
    ] {
        assert!(log.contains(reason), "no {reason:?} in the log:\n{log}");
    }
    assert_eq!(
        log.matches("Refused an utterance.").count(),
        6,
        "every refusal logged once:\n{log}"
    );
    for id in ["u-odd", "u-8k", "u-empty", "u-long"] {
        assert!(log.contains(id), "the refusal of {id} names it:\n{log}");
    }
    // Refused for good: nothing of them waits for redelivery.
    let mut stream = bus
        .jetstream()
        .get_stream(bus::names::UTTERANCES_STREAM)
        .await
        .unwrap();
    testkit::eventually(
        Duration::from_secs(10),
        "the work queue to be empty",
        async || (stream.info().await.ok()?.state.messages == 0).then_some(()),
    )
    .await;
}

#[tokio::test]
async fn a_killed_worker_s_utterance_is_transcribed_once_by_another() {
    let nats = NatsServer::start();
    let bus = nats.bus("test").await;
    let mut a = Stt::spawn(&nats.url(), &[]);
    stt_ready(&bus, 1).await;

    let sid = "s-kill";
    let long = speech(
        "Once upon a time there was a small cinema at the end of a quiet street. \
         Every evening the old projectionist climbed the stairs, threaded the film, \
         and waited for the lights to go down. People came from the whole town to \
         watch the stories, and nobody ever wanted to leave before the very end.",
    );
    let seconds = long.len() as f64 / 16_000.0;
    assert!((12.0..30.0).contains(&seconds), "{seconds} s of speech");
    let mut sub = transcript_sub(&bus, sid).await;
    send_utterance(&bus, &utterance(sid, "u-long", &long)).await;

    // A holds it (delivered, not acked): kill it mid-inference.
    let consumer = bus
        .jetstream()
        .get_stream(bus::names::UTTERANCES_STREAM)
        .await
        .unwrap()
        .get_consumer::<pull::Config>(bus::names::STT_CONSUMER)
        .await
        .unwrap();
    testkit::eventually(
        Duration::from_secs(30),
        "worker A to hold the utterance",
        async || {
            let mut c = consumer.clone();
            (c.info().await.ok()?.num_ack_pending == 1).then_some(())
        },
    )
    .await;
    a.kill9();
    let early = tokio::time::timeout(Duration::from_millis(100), sub.next()).await;
    assert!(
        early.is_err(),
        "A finished before it was killed; the utterance is too short for this machine"
    );

    let b = Stt::spawn(&nats.url(), &[]);
    // Redelivery after the ack wait, then ~20 s of speech on whatever CPU
    // the other tests leave: be patient.
    let t: Transcript = tests::next_within(
        &mut sub,
        "B's transcript",
        Duration::from_secs(150),
        |_: &Transcript| true,
    )
    .await;
    assert_eq!(t.utterance_id, "u-long");
    assert!(t.text.to_lowercase().contains("cinema"), "{t:?}");
    // B logs after it publishes.
    testkit::eventually(Duration::from_secs(5), "B's log line", async || {
        b.log().contains("Transcribed an utterance.").then_some(())
    })
    .await;

    // Exactly one transcript recorded, and nothing left on the work queue.
    let all: Vec<Transcript> =
        recorded(&bus, subjects::session(sid, SessionEvent::Transcript)).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let mut stream = bus
        .jetstream()
        .get_stream(bus::names::UTTERANCES_STREAM)
        .await
        .unwrap();
    testkit::eventually(
        Duration::from_secs(10),
        "the work queue to be empty",
        async || (stream.info().await.ok()?.state.messages == 0).then_some(()),
    )
    .await;
}

/// Serves one file over HTTP/1.1 at `/<name>` on a free loopback port
/// (404 for anything else), for the download test.
fn serve_file(name: &'static str, path: std::path::PathBuf) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let request = String::from_utf8_lossy(&request);
            if request.starts_with(&format!("GET /{name} ")) {
                let body = std::fs::read(&path).unwrap();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            } else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    port
}

#[tokio::test]
async fn models_by_name_are_downloaded_and_bad_settings_refused() {
    let nats = NatsServer::start();
    let bus = nats.bus("test").await;
    let bin = testkit::bin("stt");
    let models = tempfile::tempdir().unwrap();

    // CUDA in a CPU build, a device that does not exist, a missing model file: exit 64.
    for (key, value, says) in [
        ("WHISPER_DEVICE", "cuda", "`cuda` feature"),
        ("WHISPER_DEVICE", "tpu", "must be `cpu` or `cuda`"),
        (
            "WHISPER_MODEL",
            "/nowhere/ggml-x.bin",
            "/nowhere/ggml-x.bin",
        ),
    ] {
        let out = std::process::Command::new(&bin)
            .env("NATS_URL", nats.url())
            .env("WHISPER_MODEL", whisper_model())
            .env(key, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{key}={value}: {stderr}");
        assert!(stderr.contains(says), "{key}={value}: {stderr}");
    }

    // A named model that cannot be downloaded: a clear error naming the path.
    let port = serve_file("ggml-tiny.en.bin", whisper_model());
    let out = std::process::Command::new(&bin)
        .env("NATS_URL", nats.url())
        .env("WHISPER_MODEL", "base.en")
        .env("WHISPER_MODELS_DIR", models.path())
        .env(
            "CINEMA_STT_DOWNLOAD_URL",
            format!("http://127.0.0.1:{port}"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let wanted = models.path().join("ggml-base.en.bin");
    assert!(
        stderr.contains(&wanted.display().to_string()) && stderr.contains("404"),
        "{stderr}"
    );
    assert!(stderr.contains("WHISPER_MODEL"), "{stderr}");
    assert!(!wanted.exists());

    // A named model that is not there yet is downloaded, then used.
    let stt = Stt::spawn(
        &nats.url(),
        &[
            ("WHISPER_MODEL", "tiny.en"),
            ("WHISPER_MODELS_DIR", &models.path().display().to_string()),
            (
                "CINEMA_STT_DOWNLOAD_URL",
                &format!("http://127.0.0.1:{port}/"),
            ),
        ],
    );
    stt_ready(&bus, 1).await;
    let file = models.path().join("ggml-tiny.en.bin");
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        std::fs::metadata(whisper_model()).unwrap().len()
    );
    assert!(!models.path().join("ggml-tiny.en.bin.part").exists());
    assert!(
        stt.log().contains("Downloaded the Whisper model."),
        "{}",
        stt.log()
    );
    let mut sub = transcript_sub(&bus, "s-dl").await;
    send_utterance(&bus, &utterance("s-dl", "u-1", &speech(SENTENCE))).await;
    let t: Transcript = next(&mut sub, "the transcript", |_: &Transcript| true).await;
    assert!(word_error_rate(SENTENCE, &t.text) <= 0.25, "{t:?}");
}
