//! The sentence encoder alone: query latency (one text) and batch
//! throughput (lines/s) of the int8 encoder on each instruction set, against
//! candle's f32 BERT (what the service ran before), and how close their
//! vectors are.
//!
//! `cargo bench -p library --bench encoder`. Needs the embedding model
//! (`scripts/setup`, or `CINEMA_EMBEDDING_MODEL`).

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use encoder::{Simd, SimdCap};
use library::embed::{self, Embedder};
use testkit::latency;

const SUBJECTS: &[&str] = &[
    "the train",
    "my brother",
    "the old man",
    "your dog",
    "the captain",
    "that woman",
    "the doctor",
    "our neighbour",
    "the band",
    "the river",
];
const VERBS: &[&str] = &[
    "is leaving",
    "never came back",
    "wants to see you",
    "was singing",
    "has gone mad",
    "will wait",
    "told me everything",
    "is hungry",
    "looks tired",
    "can't swim",
];
const ENDS: &[&str] = &[
    "tonight",
    "before dawn",
    "at the station",
    "for a long time",
    "in the rain",
    "after the war",
    "without a word",
    "by the sea",
    "again and again",
    "like always",
];

/// Lines like a library's: `n` of them, 5–25 words, deterministic.
fn lines(n: usize) -> Vec<String> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |m: usize| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % m as u64) as usize
    };
    (0..n)
        .map(|_| {
            let parts = 1 + next(3);
            (0..parts)
                .map(|_| {
                    format!(
                        "{} {} {}",
                        SUBJECTS[next(10)],
                        VERBS[next(10)],
                        ENDS[next(10)]
                    )
                })
                .collect::<Vec<_>>()
                .join(", and ")
        })
        .collect()
}

struct Reference {
    bert: BertModel,
    tokenizer: tokenizers::Tokenizer,
}

impl Reference {
    fn load(dir: &std::path::Path) -> Reference {
        let config: Config = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json")).expect("config"),
        )
        .expect("config");
        let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
            .expect("weights");
        let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        let mut tokenizer =
            tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
        tokenizer.with_padding(None);
        Reference {
            bert: BertModel::load(vb, &config).expect("bert"),
            tokenizer,
        }
    }

    /// Batches of 64 sorted by length, padded, mean over the mask: what the
    /// service's candle path did at ingest.
    fn embed_batch(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .expect("tokens");
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut out = vec![Vec::new(); texts.len()];
        for batch in order.chunks(64) {
            let len = batch
                .iter()
                .map(|&i| encodings[i].get_ids().len())
                .max()
                .unwrap_or(1);
            let (mut ids, mut mask) =
                (vec![0u32; batch.len() * len], vec![0u32; batch.len() * len]);
            for (row, &i) in batch.iter().enumerate() {
                for (col, &id) in encodings[i].get_ids().iter().enumerate() {
                    ids[row * len + col] = id;
                    mask[row * len + col] = 1;
                }
            }
            let ids = Tensor::from_vec(ids, (batch.len(), len), &Device::Cpu).expect("ids");
            let types = ids.zeros_like().expect("types");
            let mask = Tensor::from_vec(mask, (batch.len(), len), &Device::Cpu).expect("mask");
            let hidden = self
                .bert
                .forward(&ids, &types, Some(&mask))
                .expect("forward");
            let maskf = mask
                .to_dtype(DType::F32)
                .expect("f32")
                .unsqueeze(2)
                .expect("unsqueeze");
            let summed = hidden
                .broadcast_mul(&maskf)
                .expect("mul")
                .sum(1)
                .expect("sum");
            let mean = summed
                .broadcast_div(&maskf.sum(1).expect("count"))
                .expect("div");
            let rows: Vec<Vec<f32>> = mean.to_vec2().expect("rows");
            for (&i, v) in batch.iter().zip(rows) {
                out[i] = embed::normalized(v);
            }
        }
        out
    }

    fn embed_one(&self, text: &str) -> Vec<f32> {
        let ids = self
            .tokenizer
            .encode(text, true)
            .expect("tokens")
            .get_ids()
            .to_vec();
        let n = ids.len();
        let ids = Tensor::from_vec(ids, (1, n), &Device::Cpu).expect("ids");
        let types = ids.zeros_like().expect("types");
        let hidden = self.bert.forward(&ids, &types, None).expect("forward");
        let mean = (hidden.sum(1).expect("sum") / n as f64).expect("mean");
        embed::normalized(mean.squeeze(0).expect("squeeze").to_vec1().expect("vec"))
    }
}

fn time_queries(queries: &[String], f: impl FnMut(&str)) -> Vec<Duration> {
    let warm = queries.iter().take(10).map(String::as_str);
    latency::time_each(warm, queries, f)
}

fn report(name: &str, t: &[Duration]) -> (f64, f64) {
    latency::report(name, 28, t);
    (latency::percentile_ms(t, 50), latency::percentile_ms(t, 99))
}

fn main() {
    let dir = testkit::embedding_model();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let queries = lines(500);
    let batch = lines(1000);
    let tokens: usize = {
        let e = Embedder::load(&dir).expect("encoder");
        println!(
            "encoder        {} weights in memory, {} kernels, {threads} threads",
            e.encoder().bytes(),
            e.encoder().simd().name()
        );
        queries
            .iter()
            .map(|q| q.split_whitespace().count())
            .sum::<usize>()
            / queries.len()
    };
    println!("queries        500 lines of ~{tokens} words; batch 1000 lines");

    let reference = Reference::load(&dir);
    let f32_times = time_queries(&queries, |q| {
        reference.embed_one(q);
    });
    let (f50, f99) = report("query f32 (candle)", &f32_times);
    let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
    let started = Instant::now();
    reference.embed_batch(&texts);
    let f32_rate = texts.len() as f64 / started.elapsed().as_secs_f64();
    println!("batch f32 (candle)           {f32_rate:.0} lines/s (batches of 64, padded, masked)");

    let mut e = Embedder::load(&dir).expect("encoder");
    for cap in SimdCap::ALL {
        let simd = Simd::best(cap);
        if cap != SimdCap::Best && simd.name() != cap.name() {
            continue;
        }
        e.set_simd(simd);
        let t = time_queries(&queries, |q| {
            e.embed_one(q).expect("embed");
        });
        let (p50, p99) = report(&format!("query int8 {}", simd.name()), &t);
        println!(
            "ratio f32/int8 {:<13} p50 {:.1}x p99 {:.1}x",
            simd.name(),
            f50 / p50,
            f99 / p99
        );
        let started = Instant::now();
        e.embed(&texts).expect("embed");
        let rate = texts.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "batch int8 {:<17} {rate:.0} lines/s ({:.1}x f32)",
            simd.name(),
            rate / f32_rate
        );
    }

    let sample: Vec<&str> = queries.iter().take(200).map(String::as_str).collect();
    let ours = e.embed(&sample).expect("embed");
    let mut cos: Vec<f32> = sample
        .iter()
        .zip(&ours)
        .map(|(q, v)| embed::dot(v, &reference.embed_one(q)))
        .collect();
    cos.sort_by(f32::total_cmp);
    println!(
        "agreement      cosine int8 vs f32 over 200 lines: min {:.4} p5 {:.4} mean {:.4}",
        cos[0],
        cos[cos.len() / 20],
        cos.iter().sum::<f32>() / cos.len() as f32
    );
}
