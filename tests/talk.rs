//! Talking from the browser end to end: headless Chromium whose microphone
//! is a WAV file (Chromium's fake capture device, looped: the visitor asks
//! the same question every few seconds) is a session's TV, over the whole
//! stack (real nats-server, services, stt with the Whisper model). The
//! browser script is `tests/browser/talk.mjs`; it checks what the page
//! shows and plays, this test checks the bus: the greeting came once, the
//! question was transcribed, the answer played, and nothing the microphone
//! heard while a clip played (or in its tail) became an utterance, although
//! the visitor was loud then.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bus::subjects::{self, SessionEvent};
use futures::StreamExt;
use tests::{FILM, World};
use wire::v1::{
    AudioFrame, PlayCommand, PlaybackEvent, PlaybackState, Transcript, TranscriptSource, Utterance,
};

const TOKEN: &str = "talk-test-token";
/// What the visitor asks, and the film's next line, which answers it.
const QUESTION: &str = FILM.1[2];
const ANSWER: &str = FILM.1[3];
/// The visitor's WAV lasts this long (the question, then silence); Chromium
/// plays it in a loop.
const LOOP_S: usize = 6;
/// pi-client's (and the gateway's) default echo tail.
const ECHO_TAIL_MS: i64 = 500;
/// Clock slack between the gateway's utterance times (its audio clock
/// against arrival) and the test's view of the bus.
const SLACK_MS: i64 = 150;

/// Everything said about sessions on the bus, with when the test saw it.
#[derive(Default, Debug)]
struct Seen {
    plays: Vec<(i64, PlayCommand)>,
    playback: Vec<PlaybackEvent>,
    utterances: Vec<Utterance>,
    transcripts: Vec<Transcript>,
    levels: Vec<(i64, f32)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talk_from_headless_chromium() {
    let chromium = testkit::require("chromium", "apt-get install chromium");
    let node = testkit::require("node", "apt-get install nodejs npm");
    let prefix = tests::playwright_prefix();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("talk-screenshots");
    let _ = std::fs::remove_dir_all(&shots);

    // The visitor: 0.3 s of silence, the question, silence to LOOP_S.
    let mut pcm = tests::speech(QUESTION);
    assert!(pcm.len() < LOOP_S * 16_000 / 2, "the question is too long");
    pcm.resize(LOOP_S * 16_000, 0);
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("visitor.wav");
    synth::write_wav(&wav, &pcm, 16_000).unwrap();

    let w = World::start_with(&[("CINEMA_API_TOKEN", TOKEN)]).await;
    // stt loads its model before it answers: the page must not talk to nobody.
    tests::stt_ready(&w.bus, 1).await;

    let mut subs = Vec::new();
    for subject in subjects::SESSION_WILDCARDS {
        subs.push(w.bus.client().subscribe(subject).await.unwrap());
    }
    let mut sub = futures::stream::select_all(subs);
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut seen = Seen::default();
            loop {
                let msg = tokio::select! {
                    () = stop.cancelled() => return seen,
                    m = sub.next() => match m { Some(m) => m, None => return seen },
                };
                let at = wire::now_ms();
                if subjects::parse_audio(&msg.subject).is_some() {
                    if let Ok(f) = bus::decode_message::<AudioFrame>(&msg) {
                        seen.levels.push((at, f.level));
                    }
                } else if subjects::parse_utterance(&msg.subject).is_some() {
                    seen.utterances.push(bus::decode_message(&msg).unwrap());
                } else {
                    match subjects::parse_session(&msg.subject).map(|(_, e)| e) {
                        Some(SessionEvent::Play) => {
                            seen.plays.push((at, bus::decode_message(&msg).unwrap()))
                        }
                        Some(SessionEvent::Playback) => {
                            seen.playback.push(bus::decode_message(&msg).unwrap())
                        }
                        Some(SessionEvent::Transcript) => {
                            seen.transcripts.push(bus::decode_message(&msg).unwrap())
                        }
                        _ => {}
                    }
                }
            }
        }
    });

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/talk.mjs");
    println!("screenshots: {}", shots.display());
    let out = tokio::task::spawn_blocking({
        let base = w.base.clone();
        let shots = shots.clone();
        move || {
            Command::new(node)
                .arg(script)
                .env("BASE", base)
                .env("TOKEN", TOKEN)
                .env("SHOTS", shots)
                .env("WAV", wav)
                .env("PLAYWRIGHT_PREFIX", prefix)
                .env("CHROMIUM", chromium)
                .env("ANSWER", ANSWER)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    // The session's last events reach the watcher.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let seen = watcher.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the browser test failed (screenshots in {}):\n{stderr}\nbus: {seen:#?}",
        shots.display()
    );
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["ok"], true);
    let sid = result["session"].as_str().unwrap().to_string();
    println!(
        "greeting playing {} ms after the click; loudest meter level {}; visitor lines {}",
        result["greeting_at_ms"], result["meter_level"], result["visitor"]
    );
    for name in [
        "01-greeting-playing.png",
        "02-answer-playing.png",
        "03-answered.png",
        "04-ended.png",
    ] {
        assert!(shots.join(name).exists(), "{name} was not saved");
    }

    // The greeting came exactly once, and the gateway reported it played.
    let plays: Vec<&(i64, PlayCommand)> = seen
        .plays
        .iter()
        .filter(|(_, p)| p.session_id == sid)
        .collect();
    let greetings: Vec<_> = plays.iter().filter(|(_, p)| p.greeting).collect();
    assert_eq!(greetings.len(), 1, "{plays:?}");
    let ended_as = |cmd: &str, state: PlaybackState| {
        seen.playback
            .iter()
            .any(|e| e.command_id == cmd && e.state() == state)
    };
    let greeting = &greetings[0].1;
    assert!(ended_as(&greeting.command_id, PlaybackState::Started));
    assert!(ended_as(&greeting.command_id, PlaybackState::Finished));

    // The question was heard from the browser's microphone and transcribed.
    let mine: Vec<&Utterance> = seen
        .utterances
        .iter()
        .filter(|u| u.session_id == sid)
        .collect();
    assert!(!mine.is_empty(), "no utterance");
    assert!(
        mine.iter()
            .all(|u| u.device == "browser" && u.sample_rate == 16_000)
    );
    let spoken: Vec<&Transcript> = seen
        .transcripts
        .iter()
        .filter(|t| t.session_id == sid && t.source() == TranscriptSource::Speech)
        .collect();
    let best = spoken
        .iter()
        .map(|t| (tests::word_error_rate(QUESTION, &t.text), t.text.as_str()))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((1.0, ""));
    println!(
        "{} utterance(s); transcripts: {:?}",
        mine.len(),
        spoken.iter().map(|t| &t.text).collect::<Vec<_>>()
    );
    assert!(
        best.0 <= 0.25,
        "heard {:?} for {QUESTION:?} (WER {:.2})",
        best.1,
        best.0
    );
    let shown = result["visitor"].as_array().unwrap();
    assert!(
        shown.iter().any(|l| l.as_str() == Some(best.1)),
        "the page shows {shown:?}"
    );

    // The answer clip was played by the page to its end.
    let log = result["log"].as_array().unwrap();
    let answer = log
        .iter()
        .find(|m| m["type"] == "play" && m["caption"] == ANSWER)
        .unwrap();
    let answer_cmd = answer["command_id"].as_str().unwrap();
    assert!(ended_as(answer_cmd, PlaybackState::Started));
    assert!(ended_as(answer_cmd, PlaybackState::Finished));

    // The echo gate: from each play command until its clip's end plus the
    // tail, nothing heard became an utterance...
    let session_end = wire::now_ms();
    let windows: Vec<(i64, i64)> = plays
        .iter()
        .map(|(at, p)| {
            let end = seen
                .playback
                .iter()
                .filter(|e| e.command_id == p.command_id && e.state() != PlaybackState::Started)
                .map(|e| e.at_ms + ECHO_TAIL_MS)
                .min()
                .unwrap_or(session_end);
            (*at, end)
        })
        .collect();
    for u in &mine {
        for (from, to) in &windows {
            assert!(
                u.speech_end_ms <= from + SLACK_MS || u.speech_start_ms >= to - SLACK_MS,
                "utterance {} ({}..{} ms) was heard while a clip played ({from}..{to}): {windows:?}",
                u.utterance_id,
                u.speech_start_ms,
                u.speech_end_ms
            );
        }
    }
    // ...although the visitor was loud in the room then (the looped question).
    let loud_while_playing = seen
        .levels
        .iter()
        .filter(|(at, _)| windows.iter().any(|(from, to)| at > from && at < to))
        .map(|(_, l)| *l)
        .fold(0.0f32, f32::max);
    assert!(
        loud_while_playing > 0.4,
        "the visitor was never heard during a clip (loudest {loud_while_playing}): the test proves nothing"
    );

    // The session is over, and it was a browser's.
    let (code, s) = w.get(&format!("/api/sessions/{sid}")).await;
    assert_eq!((code, s["state"].as_str()), (200, Some("ended")), "{s}");
    assert_eq!(s["browser"], true, "{s}");
    w.stop().await;
}
