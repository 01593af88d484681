//! Turn-taking on spoken turns: the fixed set the tests use and a larger
//! generated one (espeak-ng, five voices, four speeds, pauses of 0.4–0.9 s
//! inside two-sentence, filler and first-word turns, and single complete
//! questions). Each turn goes through the ears' endpointer (earshot VAD,
//! Smart Turn v3.2 on onnxruntime) on its own sample clock, each utterance
//! through whisper tiny.en (the stt service's engine and parameters), and
//! the lines through the director's hold rule (`llm::phrase` with the
//! director's default waits, the visitor's speech extending them), with the
//! time each line reaches the director taken as its end of turn plus its
//! real inference time. Printed: turns cut (reaching the director as more
//! than one line) with the turn model and with silence only, at the ears
//! and after the director; for complete questions the silence waited and
//! the time from the end of speech to the director's decision; the turn
//! model's time per decision and its CPU per second of audio.
//!
//!     cargo bench -p tests --bench turns
//!     CINEMA_BENCH_TURNS=200 cargo bench -p tests --bench turns
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tests::support::turns::{self, SpokenTurn};
use tests::{percentile, report, whisper_model};
use voice::turn::TurnConfig;
use voice::vad;

/// One utterance the ears sent: where it ended (the moment it was sent, in
/// ms on the turn's clock), its samples.
struct Sent {
    at_ms: f64,
    pcm: Vec<i16>,
}

/// A turn through the endpointer: what it sent, when the visitor was
/// speaking (ms).
fn ears(turn_pcm: &[i16], p: &vad::Params, judge: Option<vad::Judge>) -> (Vec<Sent>, Vec<f64>) {
    let mut ep = vad::Endpointer::new(voice::detector(), p.clone());
    if let Some(j) = judge {
        ep = ep.with_judge(j);
    }
    let (mut sent, mut speaking) = (Vec::new(), Vec::new());
    for chunk in turn_pcm.chunks(320) {
        for e in ep.push(chunk, true) {
            if let vad::Event::Utterance { pcm, .. } = e {
                sent.push(Sent {
                    at_ms: ep.clock() as f64 / 16.0,
                    pcm,
                });
            }
        }
        if ep.speaking() {
            speaking.push(ep.clock() as f64 / 16.0);
        }
    }
    (sent, speaking)
}

/// Lines reaching the director (arrival ms, text) → the turns it answers:
/// each answered line and when it was decided. The director's rule: a held
/// line waits `hold_for` after it came, extended to `after_speech_ms` after
/// any speech heard meanwhile, within `max_hold_ms`.
fn director(lines: &[(f64, String)], speaking: &[f64], c: &llm::Config) -> Vec<(f64, String)> {
    let hold = |text: &str| match llm::phrase::hold(text) {
        llm::phrase::Hold::Open => c.join_within_ms as f64,
        llm::phrase::Hold::Statement => c.statement_wait_ms as f64,
        llm::phrase::Hold::Whole => 0.0,
    };
    let mut answered = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (came, mut text) = lines[i].clone();
        let cap = came + c.max_hold_ms as f64;
        let mut now = came;
        i += 1;
        loop {
            let wait = hold(&text);
            if wait == 0.0 {
                break;
            }
            let mut deadline = (now + wait).min(cap);
            // Speech heard while held keeps the line waiting.
            for &s in speaking.iter().filter(|&&s| s > now) {
                if s <= deadline {
                    deadline = deadline.max(s + c.after_speech_ms as f64).min(cap);
                }
            }
            match lines.get(i) {
                Some((next_came, more)) if *next_came <= deadline => {
                    text = llm::phrase::join(&text, more);
                    now = *next_came;
                    i += 1;
                }
                _ => {
                    now = deadline;
                    break;
                }
            }
        }
        answered.push((now, text));
    }
    answered
}

struct Outcome {
    ears_cut: bool,
    /// Heard as more than one line (before the director held lines, each
    /// was answered on its own).
    lines_cut: bool,
    /// What the director answered.
    answered: Vec<String>,
    director_cut: bool,
    /// For complete turns: the silence waited (ms) and end of speech →
    /// the director's decision (ms).
    waited_ms: Option<f64>,
    decided_ms: Option<f64>,
}

fn run(
    turn: &SpokenTurn,
    p: &vad::Params,
    judge: Option<vad::Judge>,
    rec: &mut stt::engine::Recognizer,
    c: &llm::Config,
) -> Outcome {
    let (pcm, end) = turn.pcm(300, 2500);
    let (sent, speaking) = ears(&pcm, p, judge);
    let end_ms = end as f64 / 16.0;
    let mut lines = Vec::new();
    for s in &sent {
        let samples: Vec<f32> = s.pcm.iter().map(|&x| x as f32 / 32768.0).collect();
        let t = Instant::now();
        let heard = rec.transcribe(&stt::audio::pad_to_min(samples)).unwrap();
        let inference = t.elapsed().as_secs_f64() * 1000.0;
        if !heard.text.is_empty() {
            lines.push((s.at_ms + inference, heard.text));
        }
    }
    let answered = director(&lines, &speaking, c);
    let complete = turn.complete();
    Outcome {
        ears_cut: sent.len() > 1,
        lines_cut: lines.len() > 1,
        answered: answered.iter().map(|a| a.1.clone()).collect(),
        director_cut: answered.len() > 1,
        waited_ms: complete
            .then(|| sent.first().map(|s| s.at_ms - end_ms))
            .flatten(),
        decided_ms: complete
            .then(|| answered.first().map(|a| a.0 - end_ms))
            .flatten(),
    }
}

fn main() {
    let n: usize = std::env::var("CINEMA_BENCH_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80);
    let tc = TurnConfig {
        turn_model: std::env::var("CINEMA_TURN_MODEL").unwrap_or_default(),
        onnxruntime: std::env::var("CINEMA_ONNXRUNTIME").unwrap_or_default(),
        ..TurnConfig::default()
    };
    let model = voice::turn::shared(&tc.runtime(), &tc.model()).unwrap();
    let engine = Arc::new(
        stt::engine::Engine::load(
            &whisper_model(),
            false,
            2,
            0.6,
            stt::engine::AudioCtx::parse("fit").unwrap(),
        )
        .unwrap(),
    );
    let mut rec = engine.recognizer().unwrap();
    let director_config = llm::Config::default();
    let model_params = vad::Params {
        turn: tc.params().unwrap(),
        ..vad::Params::default()
    };
    let silence_params = vad::Params {
        turn: vad::TurnParams {
            mode: vad::TurnMode::Silence,
            ..tc.params().unwrap()
        },
        ..vad::Params::default()
    };
    // Every decision of the model, timed.
    let decisions: Arc<Mutex<Vec<f64>>> = Arc::default();
    let timed_judge = || -> vad::Judge {
        let (model, decisions) = (model.clone(), decisions.clone());
        Box::new(move |pcm: &[i16]| {
            let t = Instant::now();
            let p = model.complete(pcm).ok();
            decisions
                .lock()
                .unwrap()
                .push(t.elapsed().as_secs_f64() * 1000.0);
            p
        })
    };

    println!(
        "turn-taking: Smart Turn v3.2 (onnxruntime, 1 thread) at pauses of {} ms, rechecked every {} ms, complete at p >= {}, bound {} ms; director holds: mid-phrase {} ms, statement {} ms, after speech {} ms",
        model_params.turn.pause_ms,
        model_params.turn.recheck_ms,
        model_params.turn.complete_threshold,
        model_params.turn.max_silence_ms,
        director_config.join_within_ms,
        director_config.statement_wait_ms,
        director_config.after_speech_ms
    );
    let mut audio_s = 0.0;
    for (name, set) in [
        ("the test set", turns::set()),
        ("generated", turns::generated(n)),
    ] {
        let started = Instant::now();
        let (mut paused, mut complete) = (0, 0);
        let (mut cut_ears_m, mut cut_dir_m, mut cut_ears_s, mut cut_dir_s) = (0, 0, 0, 0);
        let mut cut_before = 0;
        let (mut waited_m, mut waited_s, mut decided_m, mut decided_s) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut cut_kinds: Vec<String> = Vec::new();
        for t in &set {
            let m = run(
                t,
                &model_params,
                Some(timed_judge()),
                &mut rec,
                &director_config,
            );
            let s = run(t, &silence_params, None, &mut rec, &director_config);
            audio_s += t.pcm(300, 2500).0.len() as f64 / 16_000.0;
            if t.complete() {
                complete += 1;
                // A complete question "cut" is one heard as two lines.
                cut_dir_m += usize::from(m.director_cut);
                waited_m.extend(m.waited_ms);
                waited_s.extend(s.waited_ms);
                decided_m.extend(m.decided_ms);
                decided_s.extend(s.decided_ms);
            } else {
                paused += 1;
                cut_ears_m += usize::from(m.ears_cut);
                cut_ears_s += usize::from(s.ears_cut);
                cut_dir_m += usize::from(m.director_cut);
                cut_dir_s += usize::from(s.director_cut);
                cut_before += usize::from(s.lines_cut);
                if m.director_cut {
                    cut_kinds.push(format!(
                        "{} {:?} answered as {:?}",
                        t.kind,
                        t.text(),
                        m.answered
                    ));
                }
            }
        }
        let pct = |k: usize, of: usize| 100.0 * k as f64 / of.max(1) as f64;
        println!(
            "\n{name}: {} turns ({paused} with a pause inside, {complete} complete), {:.0} s",
            set.len(),
            started.elapsed().as_secs_f64()
        );
        println!(
            "  paused turns cut at the ears:     model {cut_ears_m}/{paused} ({:.1} %), silence only {cut_ears_s}/{paused} ({:.1} %)",
            pct(cut_ears_m, paused),
            pct(cut_ears_s, paused)
        );
        println!(
            "  turns cut after the director:     model {cut_dir_m}/{} ({:.1} %), silence-only ears {cut_dir_s}/{paused} ({:.1} %)",
            set.len(),
            pct(cut_dir_m, set.len()),
            pct(cut_dir_s, paused)
        );
        println!(
            "  before (silence only, each line answered): {cut_before}/{paused} paused turns cut ({:.1} %)",
            pct(cut_before, paused)
        );
        if !cut_kinds.is_empty() {
            println!("  cut: {}", cut_kinds.join("; "));
        }
        report("  complete: silence waited (model)", waited_m);
        report("  complete: silence waited (silence)", waited_s);
        report("  complete: end → decided (model)", decided_m);
        report("  complete: end → decided (silence)", decided_s);
    }
    let d = decisions.lock().unwrap().clone();
    let total: f64 = d.iter().sum();
    let mut sorted = d.clone();
    sorted.sort_by(f64::total_cmp);
    println!();
    report("turn model: time per decision", d);
    println!(
        "turn model: {:.1} ms of one core per second of audio heard ({:.2} % of a core per session; p99 decision {:.1} ms)",
        total / audio_s,
        total / audio_s / 10.0,
        percentile(&sorted, 99.0)
    );
}
