//! Sentence embeddings: all-MiniLM-L6-v2 (BERT, 6 layers, 384 dimensions) on
//! the CPU through the `encoder` crate (int8 linear layers), WordPiece through
//! `tokenizers`; mean pooling over each text's own tokens, L2-normalised, so
//! a dot product is the cosine similarity.
//!
//! The model is a folder (`scripts/setup` fetches it): `model.safetensors`,
//! `tokenizer.json`, `config.json`. Nothing is downloaded here.

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationParams};

use encoder::{Config as BertConfig, Encoder};

/// Dimensions of one embedding.
pub const DIM: usize = 384;

/// The files a model folder must hold.
pub const MODEL_FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// Lines longer than this (in tokens, with `[CLS]` and `[SEP]`) are cut; the
/// model was trained on 128.
const MAX_TOKENS: usize = 128;

/// Sentences embedded in one forward pass when embedding many (nothing is
/// padded; a bigger batch only reuses the weights more).
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
    Model(#[from] encoder::Error),
}

/// A loaded sentence-embedding model. Cheap to share (`&self` everywhere).
pub struct Embedder {
    encoder: Encoder,
    tokenizer: Tokenizer,
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
        let encoder = Encoder::load(&dir.join("model.safetensors"), &config)?;
        Ok(Embedder {
            encoder,
            tokenizer,
            dir: dir.to_path_buf(),
        })
    }

    /// The model folder this was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The encoder (its instruction set, its size).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Uses the kernels of `simd` from now on (benchmarks compare them).
    pub fn set_simd(&mut self, simd: encoder::Simd) {
        self.encoder.set_simd(simd);
    }

    /// One L2-normalised [`DIM`]-dimensional vector per text, in order.
    /// An empty text gets the vector of `[CLS] [SEP]`.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            let encodings = self
                .tokenizer
                .encode_batch(batch.to_vec(), true)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
            out.extend(self.encoder.encode(&ids)?.into_iter().map(normalized));
        }
        Ok(out)
    }

    /// One text; the query path.
    pub fn embed_one(&self, text: &str) -> Result<Vec<f32>, Error> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut vectors = self.encoder.encode(&[encoding.get_ids()])?;
        Ok(vectors.pop().map(normalized).unwrap_or_default())
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
