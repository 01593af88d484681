//! The int8 sentence encoder against candle's f32 BERT (the reference the
//! service used before), with the real all-MiniLM-L6-v2 (`scripts/setup`
//! fetches it; these tests fail with that hint when it is missing).

use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use encoder::{Simd, SimdCap};
use library::embed::{self, DIM, Embedder};

/// Lines of the kind a library holds and visitors say: short and long,
/// questions, exclamations, names, numbers, punctuation.
const TEXTS: &[&str] = &[
    "Hello!",
    "Good evening. Is this seat taken?",
    "I am going home, to the city by the river.",
    "Where are you going?",
    "What time does the show start?",
    "I'm so hungry I could eat a horse.",
    "Call the police, somebody broke into the house!",
    "Stay calm, help is on the way.",
    "I love you more than anything in the world.",
    "You never told me that before.",
    "The car won't start again; maybe the battery is dead.",
    "Twenty dollars, but for you, fifteen.",
    "Frankly, my dear, I don't give a damn.",
    "May the Force be with you.",
    "Here's looking at you, kid.",
    "We'll always have Paris.",
    "I'll be back.",
    "Nobody puts Baby in a corner.",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.",
    "ok",
    "Goodbye, and thank you for everything.",
    "Do you think it will rain tomorrow?",
    "The sky looks dark over the mountains.",
    "My dog ran away this morning.",
    "",
];

fn model() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(testkit::embedding_model)
}

fn embedder() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| Embedder::load(model()).expect("the encoder loads"))
}

/// candle's BERT in f32, mean-pooled over the tokens and normalised: what
/// the service computed before the int8 encoder.
fn reference(texts: &[&str]) -> Vec<Vec<f32>> {
    let dir = model();
    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config"))
            .expect("config parses");
    let device = Device::Cpu;
    let vb = f32_weights(&dir.join("model.safetensors"), &device);
    let bert = BertModel::load(vb, &config).expect("candle loads the model");
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
    tokenizer.with_padding(None);
    texts
        .iter()
        .map(|t| {
            let ids = tokenizer
                .encode(*t, true)
                .expect("tokens")
                .get_ids()
                .to_vec();
            let n = ids.len();
            let ids = Tensor::from_vec(ids, (1, n), &device).expect("ids");
            let types = ids.zeros_like().expect("types");
            let hidden = bert.forward(&ids, &types, None).expect("forward");
            let mean: Vec<f32> = (hidden.sum(1).expect("sum") / n as f64)
                .expect("mean")
                .squeeze(0)
                .expect("squeeze")
                .to_vec1()
                .expect("vec");
            embed::normalized(mean)
        })
        .collect()
}

fn f32_weights(path: &Path, device: &Device) -> VarBuilder<'static> {
    let weights = candle_core::safetensors::load(path, device).expect("weights");
    VarBuilder::from_tensors(weights, DType::F32, device)
}

#[test]
fn int8_embeddings_agree_with_the_f32_model() {
    let want = reference(TEXTS);
    let got = embedder().embed(TEXTS).expect("embed");
    assert_eq!(got.len(), TEXTS.len());
    let mut total = 0.0;
    for ((text, g), w) in TEXTS.iter().zip(&got).zip(&want) {
        assert_eq!(g.len(), DIM);
        let cos = embed::dot(g, w);
        assert!(cos > 0.995, "{text:?}: cosine {cos} to the f32 model");
        total += cos;
    }
    let mean = total / TEXTS.len() as f32;
    assert!(mean > 0.999, "mean cosine {mean} to the f32 model");
}

#[test]
fn int8_embeddings_rank_lines_as_the_f32_model_does() {
    // For every text, the order of the others by similarity: the nearest
    // neighbour must be the same, and the top three the same set.
    let texts = &TEXTS[..TEXTS.len() - 1];
    let want = reference(texts);
    let got = embedder().embed(texts).expect("embed");
    let order = |vs: &[Vec<f32>], i: usize| {
        let mut others: Vec<usize> = (0..vs.len()).filter(|&j| j != i).collect();
        others.sort_by(|&a, &b| embed::dot(&vs[i], &vs[b]).total_cmp(&embed::dot(&vs[i], &vs[a])));
        others
    };
    let mut same_top1 = 0;
    for (i, text) in texts.iter().enumerate() {
        let (g, w) = (order(&got, i), order(&want, i));
        if g[0] == w[0] {
            same_top1 += 1;
        }
        let mut g3 = g[..3].to_vec();
        let mut w3 = w[..3].to_vec();
        g3.sort();
        w3.sort();
        let shared = g3.iter().filter(|j| w3.contains(j)).count();
        assert!(shared >= 2, "{text:?}: top three {g3:?}, f32 {w3:?}");
    }
    assert!(
        same_top1 >= texts.len() - 1,
        "the nearest line differs for {} of {} texts",
        texts.len() - same_top1,
        texts.len()
    );
}

#[test]
fn a_text_embeds_the_same_alone_or_in_a_batch() {
    let e = embedder();
    let batch = e.embed(TEXTS).expect("batch");
    for (text, b) in TEXTS.iter().zip(&batch) {
        let alone = e.embed_one(text).expect("one");
        let cos = embed::dot(&alone, b);
        assert!(cos > 0.99999, "{text:?}: {cos}");
    }
}

#[test]
fn every_instruction_set_gives_the_same_embeddings() {
    let mut e = Embedder::load(model()).expect("loads");
    let best = e.encoder().simd();
    let want = e.embed(TEXTS).expect("embed");
    for cap in [SimdCap::Portable, SimdCap::Avx2, SimdCap::Avx512] {
        e.set_simd(Simd::best(cap));
        let got = e.embed(TEXTS).expect("embed");
        for ((text, g), w) in TEXTS.iter().zip(&got).zip(&want) {
            let cos = embed::dot(g, w);
            assert!(
                cos > 0.9999,
                "{text:?}: {} vs {}: {cos}",
                cap.name(),
                best.name()
            );
        }
    }
}

#[test]
fn a_damaged_model_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["tokenizer.json", "config.json"] {
        std::fs::copy(model().join(name), dir.path().join(name)).expect("copy");
    }
    let weights = std::fs::read(model().join("model.safetensors")).expect("weights");
    // Cut short: not a safetensors file any more.
    std::fs::write(
        dir.path().join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .expect("write");
    let e = Embedder::load(dir.path()).expect_err("a truncated model is refused");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
    // A config whose shape does not match the weights.
    let config = std::fs::read_to_string(model().join("config.json"))
        .expect("config")
        .replace("\"intermediate_size\": 1536", "\"intermediate_size\": 1024");
    std::fs::write(dir.path().join("config.json"), config).expect("config");
    std::fs::write(dir.path().join("model.safetensors"), &weights).expect("write");
    let e = Embedder::load(dir.path()).expect_err("a wrong shape is refused");
    assert!(e.to_string().contains("intermediate.dense.weight"), "{e}");
}
