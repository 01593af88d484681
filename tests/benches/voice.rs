//! Voice turn latency over the whole stack (release build, real NATS, real
//! mpv, whisper tiny.en, the retrieval director): a simulated visitor says a
//! line again and again (`wav-loop:`); for every utterance, end of speech →
//! transcript, → play command published, → mpv playback restart (clip on
//! screen). Also pi-client's memory while it captures.
//!
//!     cargo bench -p tests --bench voice
//!     CINEMA_BENCH_TURNS=10 cargo bench -p tests --bench voice
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bus::subjects::{self, SessionEvent};
use futures::StreamExt;
use tests::{World, report, rss_kib};
use wire::v1::{PlayCommand, PlaybackEvent, PlaybackState, Transcript, Utterance};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let turns: usize = std::env::var("CINEMA_BENCH_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // One line, then silence long enough for the answer clip to play out.
    let dir = tempfile::tempdir().unwrap();
    let (pcm, rate) = synth::speak("Where is the station?", "en-us").unwrap();
    let mut looped = vec![0i16; rate as usize * 3 / 10];
    looped.extend(&pcm);
    looped.extend(vec![0i16; rate as usize * 7]);
    let wav = dir.path().join("visitor.wav");
    synth::write_wav(&wav, &looped, rate).unwrap();
    let input = format!("wav-loop:{}", wav.display());
    let w = World::start_with(&[("RUST_LOG", "warn"), ("CINEMA_PI_AUDIO_INPUT", &input)]).await;
    let client = w.bus.client();
    let mut utterances = client
        .subscribe(subjects::UTTERANCE_WILDCARD)
        .await
        .unwrap();
    let mut transcripts = w.subscribe(SessionEvent::Transcript).await;
    let mut plays = w.subscribe(SessionEvent::Play).await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let body = w.connect().await;
    let sid = body["identifier"].as_str().unwrap().to_string();
    let client_pid = body["pid"].as_i64().unwrap() as u32;

    // speech end (ms, wall clock) by utterance; command → utterance.
    let mut speech_end: HashMap<String, i64> = HashMap::new();
    let mut by_command: HashMap<String, String> = HashMap::new();
    let (mut to_transcript, mut to_play, mut to_screen) = (Vec::new(), Vec::new(), Vec::new());
    let (mut to_utterance, mut inference) = (Vec::new(), Vec::new());
    let mut rss_peak = 0;
    let started = Instant::now();
    let deadline = Duration::from_secs(60 + turns as u64 * 15);
    while to_screen.len() < turns && started.elapsed() < deadline {
        rss_peak = rss_peak.max(rss_kib(client_pid));
        tokio::select! {
            Some(m) = utterances.next() => {
                if let Ok(u) = bus::decode_message::<Utterance>(&m) && u.session_id == sid {
                    to_utterance.push((wire::now_ms() - u.speech_end_ms) as f64);
                    speech_end.insert(u.utterance_id, u.speech_end_ms);
                }
            }
            Some(m) = transcripts.next() => {
                if let Ok(t) = bus::decode_message::<Transcript>(&m)
                    && let Some(end) = speech_end.get(&t.utterance_id)
                {
                    to_transcript.push((wire::now_ms() - end) as f64);
                    inference.push(f64::from(t.inference_ms));
                }
            }
            Some(m) = plays.next() => {
                if let Ok(p) = bus::decode_message::<PlayCommand>(&m) && !p.greeting {
                    let utterance = p.command_id.rsplit_once(&format!("{sid}-")).map(|(_, u)| u.to_string());
                    if let Some(u) = utterance && let Some(end) = speech_end.get(&u) {
                        to_play.push((wire::now_ms() - end) as f64);
                        by_command.insert(p.command_id, u);
                    }
                }
            }
            Some(m) = playback.next() => {
                if let Ok(e) = bus::decode_message::<PlaybackEvent>(&m)
                    && e.state() == PlaybackState::Started
                    && let Some(u) = by_command.get(&e.command_id)
                    && let Some(end) = speech_end.get(u)
                {
                    to_screen.push((e.at_ms - end) as f64);
                }
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    println!(
        "voice turns with whisper tiny.en and the retrieval director ({} utterances heard)",
        speech_end.len()
    );
    report("end of speech → utterance published", to_utterance);
    report("whisper inference (in stt)", inference);
    report("end of speech → transcript", to_transcript);
    report("end of speech → play command", to_play);
    report("end of speech → playback restart", to_screen);
    println!(
        "pi-client RSS while capturing: peak {:.1} MiB (mpv excluded)",
        rss_peak as f64 / 1024.0
    );
    w.stop().await;
}
