//! The visitor's voice: a simulated Pi hears speech (a WAV file answering
//! the greeting), cuts it into an utterance and queues it for stt; and the
//! TV's own voice, heard by the same microphone, never becomes one.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bus::endpoints;
use bus::subjects::{self, SessionEvent};
use futures::StreamExt;
use tests::{World, next};
use wire::v1::{AudioFrame, PlayCommand, PlaybackEvent, PlaybackState, Utterance};

/// `text` spoken by espeak-ng, after 0.3 s of silence, as a WAV file.
fn speech_wav(dir: &std::path::Path, text: &str) -> (std::path::PathBuf, f64) {
    let (pcm, rate) = synth::speak(text, "en-us").unwrap();
    let mut padded = vec![0i16; rate as usize * 3 / 10];
    padded.extend(&pcm);
    padded.extend(vec![0i16; rate as usize / 2]);
    let path = dir.join("visitor.wav");
    synth::write_wav(&path, &padded, rate).unwrap();
    (path, pcm.len() as f64 / rate as f64)
}

/// The session's next utterance within `secs`, or the timeout.
async fn utterance_within(
    utterances: &mut bus::async_nats::Subscriber,
    sid: &str,
    secs: u64,
) -> Result<Utterance, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            let m = utterances.next().await.unwrap();
            if let Ok(u) = bus::decode_message::<Utterance>(&m)
                && u.session_id == sid
            {
                return u;
            }
        }
    })
    .await
}

/// Waits for the session's greeting to finish playing.
async fn greeting_finished(w: &World, sid: &str) -> PlaybackEvent {
    let mut plays = w.subscribe(SessionEvent::Play).await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let greeting: PlayCommand = next(&mut plays, "the greeting", |p: &PlayCommand| {
        p.session_id == sid && p.greeting
    })
    .await;
    next(
        &mut playback,
        "the greeting finished",
        |e: &PlaybackEvent| {
            e.command_id == greeting.command_id && e.state() == PlaybackState::Finished
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_answering_the_greeting_is_heard_once() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, spoken_s) = speech_wav(dir.path(), "Where is the station?");
    let input = format!("wav:{}", wav.display());
    let w = World::start_with(&[("CINEMA_PI_AUDIO_INPUT", input.as_str())]).await;
    let mut utterances = w
        .bus
        .client()
        .subscribe(subjects::UTTERANCE_WILDCARD)
        .await
        .unwrap();
    let mut frames = w
        .bus
        .client()
        .subscribe(subjects::AUDIO_WILDCARD)
        .await
        .unwrap();
    let sid = w.connect().await["identifier"]
        .as_str()
        .unwrap()
        .to_string();
    let finished = greeting_finished(&w, &sid).await;

    let u: Utterance = next(
        &mut utterances,
        "the visitor's utterance",
        |u: &Utterance| u.session_id == sid,
    )
    .await;
    assert_eq!(u.sample_rate, 16_000);
    assert_eq!(u.pcm.len() % 2, 0);
    assert_eq!(u.device, input);
    let heard_s = u.pcm.len() as f64 / 2.0 / 16_000.0;
    // The speech, with pre-roll before it and the end-of-turn silence after.
    assert!(
        heard_s > spoken_s && heard_s < spoken_s + 1.2,
        "heard {heard_s:.2} s of {spoken_s:.2} s of speech"
    );
    let speech_ms = u.speech_end_ms - u.speech_start_ms;
    assert!(
        (speech_ms as f64 / 1000.0 - spoken_s).abs() < 0.5,
        "speech {speech_ms} ms for {spoken_s:.2} s"
    );
    // The visitor answered after the greeting (and its echo tail), not over it.
    assert!(
        u.speech_start_ms >= finished.at_ms,
        "speech at {} before the greeting ended at {}",
        u.speech_start_ms,
        finished.at_ms
    );

    // Heard once: no second utterance of the same speech.
    let again = utterance_within(&mut utterances, &sid, 3).await;
    assert!(
        again.is_err(),
        "a second utterance: {:?}",
        again.map(|u| u.utterance_id)
    );

    // Observers get 20 ms level frames (buffered since before the greeting),
    // levels without the samples; the visitor's speech shows on the meter.
    let mut loudest = 0.0f32;
    for _ in 0..1000 {
        let f: AudioFrame = next(&mut frames, "audio frames", |f: &AudioFrame| {
            f.session_id == sid
        })
        .await;
        assert_eq!(
            (f.pcm.len(), f.sample_rate),
            (0, 16_000),
            "no samples on the meter's subject"
        );
        loudest = loudest.max(f.level);
        if loudest > 0.5 {
            break;
        }
    }
    assert!(loudest > 0.5, "the meter never moved: {loudest}");
    w.stop().await;
}

/// The mic hears every clip the TV plays (`simulate_echo`). With the echo
/// gate, nothing becomes an utterance; without it (the control), the TV's
/// own voice would be taken for the visitor's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tv_is_never_heard_as_the_visitor() {
    for gate in ["true", "false"] {
        let w = World::start_with(&[
            ("CINEMA_PI_CLIENT_SIMULATE_ECHO", "true"),
            ("CINEMA_PI_CLIENT_ECHO_GATE", gate),
        ])
        .await;
        let mut utterances = w
            .bus
            .client()
            .subscribe(subjects::UTTERANCE_WILDCARD)
            .await
            .unwrap();
        let sid = w.connect().await["identifier"]
            .as_str()
            .unwrap()
            .to_string();
        greeting_finished(&w, &sid).await;
        // A typed line: the TV answers with another spoken clip.
        let (code, _) = w
            .post(
                &format!("/api/sessions/{sid}/say"),
                Some(serde_json::json!({"text": "Where is the station?"})),
            )
            .await;
        assert_eq!(code, 202);
        let heard = utterance_within(&mut utterances, &sid, 12).await;
        match gate {
            "true" => assert!(
                heard.is_err(),
                "the TV's voice became an utterance: {:?}",
                heard.map(|u| u.pcm.len())
            ),
            _ => assert!(
                heard.is_ok(),
                "without the gate the echo is heard (the control)"
            ),
        }
        w.stop().await;
    }
}

/// The Pi's input is listed and chosen over the bus; a running client
/// switches at once (same process), a missing device is reported and
/// retried (never a crash loop), and a WAV chosen later is heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audio_input_is_listed_and_switched_without_a_restart() {
    use wire::v1::{
        AudioDevices, AudioDevicesRequest, ClientIssue, ClientIssueKind, SetAudioInput,
    };
    let dir = tempfile::tempdir().unwrap();
    let (wav, _) = speech_wav(dir.path(), "Is anybody home?");
    let w = World::start().await;
    let mut utterances = w
        .bus
        .client()
        .subscribe(subjects::UTTERANCE_WILDCARD)
        .await
        .unwrap();
    let mut issues = w.subscribe(SessionEvent::Client).await;
    let body = w.connect().await;
    let sid = body["identifier"].as_str().unwrap().to_string();
    let pid = body["pid"].as_i64().unwrap() as i32;
    greeting_finished(&w, &sid).await;

    let listed: AudioDevices = w
        .bus
        .request(&endpoints::pi_devices("test-pi"), &AudioDevicesRequest {})
        .await
        .unwrap();
    assert_eq!(listed.pi_id, "test-pi");
    assert_eq!(listed.audio_input, "");

    let set = |input: &str| SetAudioInput {
        audio_input: input.into(),
    };
    let bad = w
        .bus
        .request::<_, AudioDevices>(&endpoints::pi_audio_input("test-pi"), &set("microphone:1"))
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("alsa:DEVICE"), "{bad}");

    // A device this machine does not have.
    let chosen: AudioDevices = w
        .bus
        .request(&endpoints::pi_audio_input("test-pi"), &set("alsa:hw:9,0"))
        .await
        .unwrap();
    assert_eq!(chosen.audio_input, "alsa:hw:9,0");
    let issue: ClientIssue = next(&mut issues, "a microphone problem", |i: &ClientIssue| {
        i.session_id == sid && i.kind() == ClientIssueKind::AudioInput
    })
    .await;
    assert!(issue.detail.contains("hw:9,0"), "{}", issue.detail);

    // Now a visitor from a file: heard by the same client process, which
    // lived on through the failing device (it kept retrying it until now).
    let input = format!("wav:{}", wav.display());
    let _: AudioDevices = w
        .bus
        .request(&endpoints::pi_audio_input("test-pi"), &set(&input))
        .await
        .unwrap();
    let u: Utterance = next(
        &mut utterances,
        "speech from the new input",
        |u: &Utterance| u.session_id == sid,
    )
    .await;
    assert_eq!(u.device, input);
    assert!(
        testkit::group_alive(pid),
        "the client lives on through a failing device and switches without a restart"
    );

    // Stored on the Pi: the presence shows it.
    let presence = w.bus.kv(bus::names::PIS_BUCKET).await.unwrap();
    let (p, _) = bus::kv_get::<wire::v1::PiPresence>(&presence, "test-pi")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.audio_input, input);
    w.stop().await;
}

/// The whole voice path: a visitor's spoken question → pi-client utterance
/// → stt (whisper tiny.en) → transcript → the director → the answer clip
/// playing on the Pi.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoken_question_is_answered_with_a_clip() {
    use wire::v1::Transcript;
    let dir = tempfile::tempdir().unwrap();
    let (wav, _) = speech_wav(dir.path(), "Where is the station?");
    let input = format!("wav:{}", wav.display());
    let w = World::start_with(&[("CINEMA_PI_AUDIO_INPUT", input.as_str())]).await;
    let mut transcripts = w.subscribe(SessionEvent::Transcript).await;
    let mut plays = w.subscribe(SessionEvent::Play).await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let sid = w.connect().await["identifier"]
        .as_str()
        .unwrap()
        .to_string();

    let t: Transcript = next(&mut transcripts, "the transcript", |t: &Transcript| {
        t.session_id == sid
    })
    .await;
    let wer = tests::word_error_rate("Where is the station?", &t.text);
    assert!(wer <= 0.25, "heard {:?} (WER {wer:.2})", t.text);
    assert_eq!(t.source(), wire::v1::TranscriptSource::Speech);
    assert!(t.inference_ms > 0);

    let answer: PlayCommand = next(&mut plays, "the answer", |p: &PlayCommand| {
        p.session_id == sid && !p.greeting
    })
    .await;
    assert!(answer.command_id.contains(&t.utterance_id), "{answer:?}");
    next(
        &mut playback,
        "the answer on screen",
        |e: &PlaybackEvent| {
            e.command_id == answer.command_id && e.state() == PlaybackState::Started
        },
    )
    .await;
    let status = w
        .status_until(&sid, "the answer in the record", |s| {
            s.to_string().contains("past the bakery")
        })
        .await;
    assert!(status.to_string().contains(&t.text), "{status}");
    w.stop().await;
}
