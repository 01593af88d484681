//! The stt service against whisper.cpp called directly: time per utterance
//! for about 1 s, 3 s and 8 s of speech, through the service (utterance
//! published → transcript received: NATS, decoding, the worker, publishing)
//! and through whisper-rs in this process (same model, same threads, same
//! parameters, same audio). The ratio is the service's overhead.
//!
//!     cargo bench -p tests --bench whisper
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use bus::subjects::{self, SessionEvent};
use stt::engine::AudioCtx;
use tests::{Stt, next, percentile, send_utterance, speech, stt_ready, utterance, whisper_model};
use whisper_rs::{WhisperContext, WhisperContextParameters};
use wire::v1::Transcript;

const RUNS: usize = 7;
const LINES: [(&str, &str); 3] = [
    ("~1 s", "Hello there."),
    ("~3 s", "Where is the train station? I think I am lost."),
    (
        "~8 s",
        "Every morning the old baker opens his shop before anyone else in the village is awake, \
         and the smell of bread drifts down the street.",
    ),
];

fn p50(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 50.0), percentile(&v, 95.0))
}

/// whisper-rs directly, with the stt service's parameters
/// (`stt::engine::params`), the same encoder window.
fn raw(ctx: &WhisperContext, samples: &[f32], audio_ctx: AudioCtx) -> f64 {
    let mut state = ctx.create_state().unwrap();
    let params = stt::engine::params(2, true, audio_ctx.positions(samples.len()));
    let t = Instant::now();
    state.full(params, samples).unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let _ = state.as_iter().count();
    ms
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("bench").await;
    let _ = testkit::bin("stt");
    let stt = Stt::spawn(
        &nats.url(),
        &[
            ("RUST_LOG", "warn"),
            ("CINEMA_STT_ACK_WAIT_S", "30"),
            ("CINEMA_STT_THREADS", "2"),
        ],
    );
    stt_ready(&bus, 1).await;
    let sid = "bench";
    let mut sub = bus
        .client()
        .subscribe(subjects::session(sid, SessionEvent::Transcript))
        .await
        .unwrap();
    let audio: Vec<Vec<i16>> = LINES.iter().map(|(_, l)| speech(l)).collect();

    // Through the service (one warm-up each, not counted).
    let mut service: Vec<Vec<f64>> = vec![Vec::new(); LINES.len()];
    for run in 0..=RUNS {
        for (i, pcm) in audio.iter().enumerate() {
            let id = format!("u-{run}-{i}");
            let sent = Instant::now();
            send_utterance(&bus, &utterance(sid, &id, pcm)).await;
            let _: Transcript = next(&mut sub, "a transcript", |t: &Transcript| {
                t.utterance_id == id
            })
            .await;
            if run > 0 {
                service[i].push(sent.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    drop(stt);

    // whisper.cpp directly, the same audio, one warm-up each.
    let mut ctx_params = WhisperContextParameters::default();
    ctx_params.use_gpu(false);
    let ctx =
        WhisperContext::new_with_params(whisper_model().to_str().unwrap(), ctx_params).unwrap();
    // The service's window (WHISPER_AUDIO_CTX, `fit` by default) and, for
    // scale, the full 30 s window.
    let fitted =
        AudioCtx::parse(&std::env::var("WHISPER_AUDIO_CTX").unwrap_or("fit".into())).unwrap();
    let mut direct: Vec<Vec<f64>> = vec![Vec::new(); LINES.len()];
    let mut full: Vec<Vec<f64>> = vec![Vec::new(); LINES.len()];
    for run in 0..=RUNS {
        for (i, pcm) in audio.iter().enumerate() {
            let mut samples: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
            samples.resize(samples.len().max(16_000), 0.0);
            let ms = tokio::task::block_in_place(|| raw(&ctx, &samples, fitted));
            let full_ms = tokio::task::block_in_place(|| raw(&ctx, &samples, AudioCtx::Full));
            if run > 0 {
                direct[i].push(ms);
                full[i].push(full_ms);
            }
        }
    }

    println!(
        "whisper tiny.en, 2 threads, audio_ctx {fitted:?}, {RUNS} runs per length, 2-core machine"
    );
    for (i, (label, _)) in LINES.iter().enumerate() {
        let secs = audio[i].len() as f64 / 16_000.0;
        let (s50, s95) = p50(service[i].clone());
        let (d50, d95) = p50(direct[i].clone());
        let (f50, _) = p50(full[i].clone());
        println!(
            "{label} ({secs:.1} s audio)  service p50={s50:>6.1} ms p95={s95:>6.1} ms  |  whisper-rs direct p50={d50:>6.1} ms p95={d95:>6.1} ms  |  ratio p50={:.3}  |  direct, full 30 s window p50={f50:>6.1} ms",
            s50 / d50
        );
    }
}
