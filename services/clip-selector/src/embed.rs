//! Sentence embeddings: all-MiniLM-L6-v2 (BERT, 6 layers, 384 dimensions) on
//! the CPU through candle, WordPiece through `tokenizers`; mean pooling over
//! the real tokens (the attention mask), L2-normalised, so a dot product is
//! the cosine similarity.
//!
//! The model is a folder (`scripts/setup` fetches it): `model.safetensors`,
//! `tokenizer.json`, `config.json`. Nothing is downloaded here.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

/// Dimensions of one embedding.
pub const DIM: usize = 384;

/// The files a model folder must hold.
pub const MODEL_FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// Lines longer than this (in tokens, with `[CLS]` and `[SEP]`) are cut; the
/// model was trained on 128.
const MAX_TOKENS: usize = 128;

/// Sentences embedded in one forward pass when embedding many; lines are
/// sorted by length first, so a batch pads little.
const BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("embedding model folder {dir} has no {file} (run scripts/setup, or set CINEMA_EMBEDDING_MODEL to a folder with {files})", files = MODEL_FILES.join(", "))]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("embedding model config {path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("embedding model {path} produces {got}-dimensional vectors, expected {DIM}")]
    Dimensions { path: PathBuf, got: usize },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("embedding model: {0}")]
    Model(#[from] candle_core::Error),
}

/// A loaded sentence-embedding model. Cheap to share (`&self` everywhere).
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dir: PathBuf,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("dir", &self.dir).finish()
    }
}

impl Embedder {
    /// Loads the model folder `dir`; the error names the first missing file.
    pub fn load(dir: &Path) -> Result<Embedder, Error> {
        for file in MODEL_FILES {
            if !dir.join(file).is_file() {
                return Err(Error::MissingFile {
                    dir: dir.to_path_buf(),
                    file,
                });
            }
        }
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| Error::Io {
            path: config_path.clone(),
            source,
        })?;
        let config: BertConfig = serde_json::from_str(&text).map_err(|source| Error::Config {
            path: config_path.clone(),
            source,
        })?;
        if config.hidden_size != DIM {
            return Err(Error::Dimensions {
                path: config_path,
                got: config.hidden_size,
            });
        }
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| {
            Error::Tokenizer(format!("{}: {e}", dir.join("tokenizer.json").display()))
        })?;
        // The shipped tokenizer pads every input to 128 tokens; pad per batch
        // instead (the mask keeps the padding out of the mean anyway).
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let device = Device::Cpu;
        let mut weights = candle_core::safetensors::load(dir.join("model.safetensors"), &device)?;
        // Linear layers compute `x · Wᵀ`. Stored as they come, `Wᵀ` is a
        // strided view that the matrix multiply repacks on every call (half
        // the time of a short query); stored column-major, `Wᵀ` is a plain
        // row-major matrix. Same shape and values, another memory layout.
        for (name, w) in weights.iter_mut() {
            if name.starts_with("encoder.") && name.ends_with(".weight") && w.rank() == 2 {
                *w = w.t()?.contiguous()?.t()?;
            }
        }
        let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
        let model = BertModel::load(vb, &config)?;
        Ok(Embedder {
            model,
            tokenizer,
            device,
            dir: dir.to_path_buf(),
        })
    }

    /// The model folder this was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One L2-normalised [`DIM`]-dimensional vector per text, in order.
    /// Texts are batched by length; an empty text gets the vector of
    /// `[CLS] [SEP]`.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| (encodings[i].get_ids().len(), i));
        let mut out = vec![Vec::new(); encodings.len()];
        for batch in order.chunks(BATCH) {
            let group: Vec<&Encoding> = batch.iter().map(|&i| &encodings[i]).collect();
            for (&i, v) in batch.iter().zip(self.forward(&group)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// One text; the query path.
    pub fn embed_one(&self, text: &str) -> Result<Vec<f32>, Error> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(self.forward(&[&encoding])?.pop().unwrap_or_default())
    }

    /// A forward pass over encodings padded to the longest; mean over the
    /// unmasked tokens, then L2-normalised.
    fn forward(&self, group: &[&Encoding]) -> Result<Vec<Vec<f32>>, Error> {
        let n = group.len();
        let len = group.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        if n == 0 || len == 0 {
            return Ok(vec![vec![0.0; DIM]; n]);
        }
        let mut ids = vec![0u32; n * len];
        let mut mask = vec![0u32; n * len];
        for (row, e) in group.iter().enumerate() {
            for (col, &id) in e.get_ids().iter().enumerate() {
                ids[row * len + col] = id;
                mask[row * len + col] = 1;
            }
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let types = ids.zeros_like()?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (n, len, DIM)
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = hidden.broadcast_mul(&maskf)?.sum(1)?; // (n, DIM)
        let counts = maskf.sum(1)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        let rows: Vec<Vec<f32>> = mean.to_vec2()?;
        Ok(rows.into_iter().map(normalized).collect())
    }
}

/// `v / |v|`; a zero vector stays zero.
pub fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The dot product of two vectors (the cosine of normalised ones).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
