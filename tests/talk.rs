//! Talking from the browser end to end: headless Chromium whose microphone
//! is a WAV file (Chromium's fake capture device, looped: the visitor asks
//! the same question every few seconds) is a session's TV, over the whole
//! stack (real nats-server, services, stt with the Whisper model), driven
//! over WebDriver (`chromium-driver`) from Rust. The browser half checks
//! what the page shows and plays; the bus half checks the greeting came once, the
//! question was transcribed, the answer played, and nothing the microphone
//! heard while a clip played (or in its tail) became an utterance, although
//! the visitor was loud then.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use bus::subjects::{self, SessionEvent};
use futures::StreamExt;
use serde_json::{Value, json};
use tests::webdriver::{Browser, Launch};
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
                        // The session's last event: everything it said
                        // before is in.
                        Some(SessionEvent::Ended) => return seen,
                        _ => {}
                    }
                }
            }
        }
    });

    println!("screenshots: {}", shots.display());
    let result = talk_in_page(&w.base, &shots, &wav).await;
    // The watcher ends with the session's end (the page ends it last); if
    // the page never got that far, it is stopped.
    if result["ok"] != true {
        stop.cancel();
    }
    let seen = tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .expect("the session's end to reach the watcher")
        .unwrap();
    assert_eq!(result["ok"], true, "{result}");
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
    // The same turn-taking as a Pi's: the turn model decided the end.
    assert!(
        mine.iter()
            .any(|u| u.turn_end == "model" || u.turn_end == "bound"),
        "{:?}",
        mine.iter()
            .map(|u| (&u.turn_end, u.turn_complete))
            .collect::<Vec<_>>()
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

/// The page's own record of the socket (`window.cinemaTalk.log`).
const LOG: &str = "return window.cinemaTalk.log;";

/// The clip of `arguments[0]` plays in the page: the page reported it
/// started, the video runs, and the film's time is inside the clip's range.
const PLAYING: &str = "const id = arguments[0];
  const t = window.cinemaTalk;
  const v = document.querySelector('#talk-video');
  const play = t.log.find((m) => m.type === 'play' && m.command_id === id);
  const started = t.log.some((m) => m.dir === 'out' && m.type === 'playback' && m.command_id === id && m.state === 'started');
  return !!(play && started && !v.paused && v.currentTime > play.start_s && v.currentTime < play.end_s + 0.1 && v.readyState >= 2);";

/// The page's last playback report of the clip of `arguments[0]` that is
/// not `started` (finished, failed or interrupted).
const ENDED: &str = "const id = arguments[0];
  return window.cinemaTalk.log.find((m) => m.dir === 'out' && m.type === 'playback' && m.command_id === id && m.state !== 'started') || null;";

const POLL: Duration = Duration::from_millis(50);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn playing_in_page(page: &Browser, command_id: &str, timeout: Duration) {
    page.wait_js(
        &format!("clip {command_id} playing in the page"),
        PLAYING,
        vec![json!(command_id)],
        timeout,
        POLL,
    )
    .await;
}

async fn finished_in_page(page: &Browser, command_id: &str, timeout: Duration) {
    let m = page
        .wait_js(
            &format!("clip {command_id} to end in the page"),
            ENDED,
            vec![json!(command_id)],
            timeout,
            POLL,
        )
        .await;
    if m["state"] != "finished" {
        page.fail(&format!(
            "clip {command_id} ended {}: {}",
            m["state"], m["error"]
        ))
        .await;
    }
}

/// The visitor at the Talk page: start talking, hear the greeting, be
/// heard, see and hear the answer, end. Returns what the page showed
/// (`{ok, session, visitor, greeting_at_ms, meter_level, log}`), the log's
/// times as wall-clock milliseconds comparable with the bus's.
async fn talk_in_page(base: &str, shots: &Path, wav: &Path) -> Value {
    let flags = [
        // A microphone that plays the visitor's WAV (looped), allowed
        // without asking.
        "--use-fake-ui-for-media-stream".to_string(),
        "--use-fake-device-for-media-stream".to_string(),
        format!("--use-file-for-fake-audio-capture={}", wav.display()),
    ];
    let page = Browser::launch(Launch {
        viewport: (1280, 860),
        flags: &flags,
        shots,
        prompt_answer: TOKEN,
    })
    .await;

    // Open the Talk page.
    page.goto(&format!("{base}/#talk")).await;
    page.wait_for("#live.on", None, secs(15)).await;
    page.wait_for("#page-talk:not([hidden])", None, secs(5))
        .await;

    // Start talking: the socket joins and the microphone is on.
    let t0 = Instant::now();
    page.click("#talk-start").await;
    page.wait_js(
        "the socket to join",
        "return window.cinemaTalk.log.some((m) => m.type === 'joined');",
        vec![],
        secs(20),
        POLL,
    )
    .await;
    let log = page.eval(LOG, vec![]).await;
    let sid = log
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "session")
        .and_then(|m| m["session_id"].as_str())
        .unwrap()
        .to_string();
    let mic = page.attr("#talk-mic", "aria-pressed").await;
    if mic.as_deref() != Some("true") {
        let msg = page.text("#talk-msg").await;
        page.fail(&format!("the microphone is not on ({msg})"))
            .await;
    }

    // The greeting plays in the page.
    let greeting = page
        .wait_js(
            "the greeting's play command",
            "return window.cinemaTalk.log.find((m) => m.type === 'play' && m.greeting) || null;",
            vec![],
            secs(30),
            POLL,
        )
        .await;
    let greeting_id = greeting["command_id"].as_str().unwrap().to_string();
    playing_in_page(&page, &greeting_id, secs(20)).await;
    let greeting_at_ms = t0.elapsed().as_millis();
    page.wait_for("#talk-state.speaking", None, secs(5)).await;
    page.shot("01-greeting-playing.png", true).await;
    finished_in_page(&page, &greeting_id, secs(30)).await;

    // The visitor is heard and transcribed.
    let card = format!("#talk-conversation .session[data-sid=\"{sid}\"]");
    page.wait_for(&format!("{card} li.visitor"), None, secs(60))
        .await;
    page.wait_for("#talk-state.listening, #talk-state.speaking", None, secs(5))
        .await;

    // The answer plays in the page, with its caption on the screen.
    let answer = page
        .wait_js(
            "the answer's play command",
            "return window.cinemaTalk.log.find((m) => m.type === 'play' && m.caption === arguments[0]) || null;",
            vec![json!(ANSWER)],
            secs(90),
            POLL,
        )
        .await;
    let answer_id = answer["command_id"].as_str().unwrap().to_string();
    playing_in_page(&page, &answer_id, secs(20)).await;
    let caption = page.text("#talk-caption").await;
    if caption != ANSWER {
        page.fail(&format!("the screen's caption is {caption:?}"))
            .await;
    }
    page.shot("02-answer-playing.png", true).await;
    finished_in_page(&page, &answer_id, secs(30)).await;
    page.wait_for(&format!("{card} li.clip .caption"), Some(ANSWER), secs(10))
        .await;
    page.wait_for(
        &format!("{card} li.clip .playback.finished"),
        None,
        secs(10),
    )
    .await;
    page.shot("03-answered.png", true).await;

    // The meter showed the visitor's voice, as the gateway heard it.
    let level = page
        .eval("return window.cinemaTalk.meterMax;", vec![])
        .await
        .as_f64()
        .unwrap_or(0.0);
    if level <= 0.3 {
        page.fail(&format!("the level meter never moved (loudest {level})"))
            .await;
    }

    // End the session.
    page.click("#talk-end").await;
    page.wait_js(
        "the page to see the session end",
        "return !!window.cinemaTalk.ended;",
        vec![],
        secs(20),
        POLL,
    )
    .await;
    page.wait_for(&format!("{card} .state.ended"), None, secs(20))
        .await;
    page.shot("04-ended.png", true).await;

    let problems = page.problems().await;
    if !problems.is_empty() {
        page.fail(&format!("the page reported problems: {problems:#?}"))
            .await;
    }
    let visitor = page
        .eval(
            "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent);",
            vec![json!(format!("{card} li.visitor .line"))],
        )
        .await;
    // Page times as wall-clock milliseconds, comparable with the bus's.
    let log = page
        .eval(
            "return window.cinemaTalk.log.map((m) => ({ ...m, wall_ms: Math.round(performance.timeOrigin + m.at) }));",
            vec![],
        )
        .await;
    page.close().await;
    json!({
        "ok": true,
        "session": sid,
        "visitor": visitor,
        "greeting_at_ms": greeting_at_ms,
        "meter_level": level,
        "log": log,
    })
}
