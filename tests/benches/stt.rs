//! Speech-to-text latency: a real stt process (release build, the tiny.en
//! model from `../shared/models`, default settings: 2 threads, 1 worker)
//! transcribing 30 utterances of 1–6 s of espeak-ng speech, one at a time.
//! Reports Whisper's inference time, end to end (publish of the utterance →
//! transcript received) and the real-time factor (inference / audio).
//!
//!     cargo bench -p tests --bench stt
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use bus::subjects::{self, SessionEvent};
use tests::{
    Stt, next, percentile, report, rss_kib, send_utterance, speech, stt_ready, utterance,
    word_error_rate,
};
use wire::v1::Transcript;

const LINES: [&str; 30] = [
    "Hello.",
    "Good evening.",
    "Thank you.",
    "Where am I?",
    "Can you hear me?",
    "What is your name?",
    "I would like to see a film.",
    "Where is the train station?",
    "Do you have anything to eat?",
    "It has rained all day.",
    "Tell me a story about the sea.",
    "Is anybody home tonight?",
    "I lost my way in the forest.",
    "Show me something funny, please.",
    "What time does the last train leave?",
    "My grandmother loved old black and white movies.",
    "Could you play the scene with the dancing again?",
    "I think the detective already knows who did it.",
    "We walked along the river until the sun went down.",
    "Please tell me more about the man in the long coat.",
    "The station is down the road, past the bakery on the corner.",
    "I have never seen a cinema quite like this one before.",
    "If you could travel anywhere in the world, where would you go?",
    "She opened the letter slowly and read it twice before she smiled.",
    "The projector hummed quietly while the audience waited in the dark.",
    "Every morning the baker opens his shop before anyone else is awake.",
    "Tell me about the happiest day of your life, and do not leave anything out.",
    "When the music started, everyone in the room stood up and began to dance.",
    "I remember the smell of popcorn and the sound of the old red curtains opening.",
    "Nobody in the village believed him until the lights appeared over the hills.",
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("bench").await;
    let audio: Vec<Vec<i16>> = LINES.iter().map(|l| speech(l)).collect();
    let seconds: Vec<f64> = audio.iter().map(|a| a.len() as f64 / 16_000.0).collect();
    let (shortest, longest) = seconds
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), s| (lo.min(*s), hi.max(*s)));

    // Build first, so start-up is the service's alone.
    let _ = testkit::bin("stt");
    let t0 = Instant::now();
    let stt = Stt::spawn(
        &nats.url(),
        &[("RUST_LOG", "warn"), ("CINEMA_STT_ACK_WAIT_S", "30")],
    );
    stt_ready(&bus, 1).await;
    println!(
        "stt ready (model loaded, consumer bound) in {:.2} s; {} utterances of {shortest:.1}–{longest:.1} s (0.3 s lead + 0.2 s tail silence included)",
        t0.elapsed().as_secs_f64(),
        LINES.len()
    );

    let sid = "bench";
    let mut sub = bus
        .client()
        .subscribe(subjects::session(sid, SessionEvent::Transcript))
        .await
        .unwrap();
    // Warm-up (page cache, first allocations), not counted.
    send_utterance(&bus, &utterance(sid, "warm-up", &audio[0])).await;
    let _: Transcript = next(&mut sub, "the warm-up transcript", |_: &Transcript| true).await;

    let cpu_before = cpu_s(stt.pid());
    let (mut inference, mut e2e, mut rtf, mut wers) = (vec![], vec![], vec![], vec![]);
    for (i, (line, pcm)) in LINES.iter().zip(&audio).enumerate() {
        let id = format!("u-{i}");
        let u = utterance(sid, &id, pcm);
        let sent = Instant::now();
        send_utterance(&bus, &u).await;
        let t: Transcript = next(&mut sub, "a transcript", |t: &Transcript| {
            t.utterance_id == id
        })
        .await;
        e2e.push(sent.elapsed().as_secs_f64() * 1000.0);
        inference.push(f64::from(t.inference_ms));
        rtf.push(f64::from(t.inference_ms) / (seconds[i] * 1000.0));
        wers.push(word_error_rate(line, &t.text));
    }
    report("inference", inference);
    report("end to end", e2e);
    rtf.sort_by(f64::total_cmp);
    println!(
        "real-time factor           p50={:.3}  (inference time / audio duration; below 1 is faster than real time)",
        percentile(&rtf, 50.0)
    );
    println!(
        "word error rate            mean={:.3}  perfect={}/{}",
        wers.iter().sum::<f64>() / wers.len() as f64,
        wers.iter().filter(|w| **w == 0.0).count(),
        wers.len()
    );
    let cpu = cpu_s(stt.pid()) - cpu_before;
    let audio_s: f64 = seconds.iter().sum();
    println!(
        "stt CPU time               {cpu:.1} s for {audio_s:.1} s of audio ({:.3} CPU-s per audio-s; wall times above depend on what else runs)",
        cpu / audio_s
    );
    println!(
        "stt RSS {:.1} MiB",
        rss_kib(stt.pid() as u32) as f64 / 1024.0
    );
}

/// User + system CPU seconds of a process so far (from /proc, USER_HZ = 100).
fn cpu_s(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    (ticks(14).unwrap_or(0.0) + ticks(15).unwrap_or(0.0)) / 100.0
}
