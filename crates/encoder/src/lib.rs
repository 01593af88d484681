//! A sentence encoder: a BERT forward pass (all-MiniLM-L6-v2's shape, any
//! size of it) with the linear layers in int8 ([`int8`]) and the rest
//! (embeddings, layer norms, attention, GELU) in f32. Tokenizing and pooling
//! policy belong to the caller (clip-selector's `embed`).
//!
//! Sentences of a batch are not padded: their tokens are the rows of one
//! matrix for the linear layers, and attention runs per sentence over its
//! own tokens only, so a batch costs what its tokens cost.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};

pub mod int8;
pub mod simd;

use int8::{Linear, Rows, round};
pub use simd::{Simd, SimdCap};

/// Names how this encoder computes (int8 weights, 14-bit inputs, tanh GELU);
/// changes whenever its vectors would change, so stored ones are remade.
pub const NUMERICS: &str = "int8-w8a14-gelu-tanh-1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a safetensors file: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: tensor {name}: {problem}")]
    Tensor {
        path: PathBuf,
        name: String,
        problem: String,
    },
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    Token { id: u32, vocab: usize },
    #[error("{len} tokens in one text; the model takes at most {max}")]
    TooLong { len: usize, max: usize },
}

/// The fields of a BERT `config.json` the forward pass needs.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "gelu")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn gelu() -> String {
    "gelu".into()
}
fn type_vocab() -> usize {
    2
}
fn layer_norm_eps() -> f64 {
    1e-12
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    /// Query, key and value in one: `3 · hidden` outputs.
    qkv: Linear,
    out: Linear,
    norm1: Norm,
    up: Linear,
    down: Linear,
    norm2: Norm,
}

/// A loaded encoder. `&self` everywhere; batches may run concurrently.
pub struct Encoder {
    hidden: usize,
    heads: usize,
    eps: f32,
    max_tokens: usize,
    vocab: usize,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    norm: Norm,
    layers: Vec<Layer>,
    simd: Simd,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("hidden", &self.hidden)
            .field("layers", &self.layers.len())
            .field("simd", &self.simd.name())
            .finish()
    }
}

/// Reads tensors by name, with or without a `bert.` prefix, checking shapes.
struct Tensors<'a> {
    st: SafeTensors<'a>,
    path: &'a Path,
    prefix: &'static str,
}

impl Tensors<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, Error> {
        let full = format!("{}{name}", self.prefix);
        let problem = |problem: String| Error::Tensor {
            path: self.path.to_path_buf(),
            name: full.clone(),
            problem,
        };
        let view = self
            .st
            .tensor(&full)
            .map_err(|_| problem("missing".into()))?;
        if view.dtype() != Dtype::F32 {
            return Err(problem(format!("{:?}, expected F32", view.dtype())));
        }
        if view.shape() != shape {
            return Err(problem(format!(
                "shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn linear(&self, name: &str, outputs: usize, inputs: usize) -> Result<Linear, Error> {
        let w = self.get(&format!("{name}.weight"), &[outputs, inputs])?;
        let b = self.get(&format!("{name}.bias"), &[outputs])?;
        Linear::new(&w, &b, outputs, inputs).ok_or_else(|| Error::Tensor {
            path: self.path.to_path_buf(),
            name: name.into(),
            problem: "empty".into(),
        })
    }

    fn norm(&self, name: &str, width: usize) -> Result<Norm, Error> {
        Ok(Norm {
            gamma: self.get(&format!("{name}.weight"), &[width])?,
            beta: self.get(&format!("{name}.bias"), &[width])?,
        })
    }

    /// Query, key and value weights stacked into one layer.
    fn qkv(&self, name: &str, hidden: usize) -> Result<Linear, Error> {
        let (mut w, mut b) = (Vec::new(), Vec::new());
        for part in ["query", "key", "value"] {
            w.extend(self.get(&format!("{name}.{part}.weight"), &[hidden, hidden])?);
            b.extend(self.get(&format!("{name}.{part}.bias"), &[hidden])?);
        }
        Linear::new(&w, &b, 3 * hidden, hidden).ok_or_else(|| Error::Unsupported(name.into()))
    }
}

impl Encoder {
    /// The BERT weights in `weights` (a safetensors file) shaped as `config`
    /// says; linear layers are quantised here.
    pub fn load(weights: &Path, config: &Config) -> Result<Encoder, Error> {
        if config.hidden_act != "gelu" {
            return Err(Error::Unsupported(format!(
                "activation {}",
                config.hidden_act
            )));
        }
        if let Some(kind) = config
            .position_embedding_type
            .as_deref()
            .filter(|k| *k != "absolute")
        {
            return Err(Error::Unsupported(format!("{kind} position embeddings")));
        }
        let (hidden, heads) = (config.hidden_size, config.num_attention_heads);
        if heads == 0 || hidden == 0 || hidden % heads != 0 {
            return Err(Error::Unsupported(format!(
                "{hidden} hidden units in {heads} heads"
            )));
        }
        let bytes = std::fs::read(weights).map_err(|source| Error::Io {
            path: weights.to_path_buf(),
            source,
        })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Format {
            path: weights.to_path_buf(),
            message: e.to_string(),
        })?;
        let prefix = if st.tensor("embeddings.word_embeddings.weight").is_err()
            && st.tensor("bert.embeddings.word_embeddings.weight").is_ok()
        {
            "bert."
        } else {
            ""
        };
        let t = Tensors {
            st,
            path: weights,
            prefix,
        };
        let inter = config.intermediate_size;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = format!("encoder.layer.{i}");
            layers.push(Layer {
                qkv: t.qkv(&format!("{l}.attention.self"), hidden)?,
                out: t.linear(&format!("{l}.attention.output.dense"), hidden, hidden)?,
                norm1: t.norm(&format!("{l}.attention.output.LayerNorm"), hidden)?,
                up: t.linear(&format!("{l}.intermediate.dense"), inter, hidden)?,
                down: t.linear(&format!("{l}.output.dense"), hidden, inter)?,
                norm2: t.norm(&format!("{l}.output.LayerNorm"), hidden)?,
            });
        }
        let token_type = t.get(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, hidden],
        )?;
        Ok(Encoder {
            hidden,
            heads,
            eps: config.layer_norm_eps as f32,
            max_tokens: config.max_position_embeddings,
            vocab: config.vocab_size,
            word: t.get(
                "embeddings.word_embeddings.weight",
                &[config.vocab_size, hidden],
            )?,
            position: t.get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, hidden],
            )?,
            token_type: token_type[..hidden].to_vec(),
            norm: t.norm("embeddings.LayerNorm", hidden)?,
            layers,
            simd: Simd::best(SimdCap::Best),
        })
    }

    /// The instruction set the kernels use.
    pub fn simd(&self) -> Simd {
        self.simd
    }

    /// Uses `simd` (at most what the CPU has) from now on.
    pub fn set_simd(&mut self, simd: Simd) {
        self.simd = simd;
    }

    /// Bytes of weights held in memory.
    pub fn bytes(&self) -> usize {
        let floats = self.word.len() + self.position.len() + self.token_type.len();
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                l.qkv.bytes() + l.out.bytes() + l.up.bytes() + l.down.bytes() + 16 * self.hidden
            })
            .sum();
        floats * 4 + layers
    }

    /// The mean over its tokens of the last hidden states, one vector per
    /// sentence (token ids with `[CLS]` and `[SEP]`); not normalised. An empty
    /// sentence gets zeros.
    pub fn encode(&self, sentences: &[&[u32]]) -> Result<Vec<Vec<f32>>, Error> {
        // The whole pass runs on a pool thread: each layer's parallel parts
        // then start from a worker that is awake, not from a caller that
        // must hand each of them over and sleep (a fifth of a query's time).
        rayon::scope(|_| self.encode_here(sentences))
    }

    fn encode_here(&self, sentences: &[&[u32]]) -> Result<Vec<Vec<f32>>, Error> {
        for ids in sentences {
            if ids.len() > self.max_tokens {
                return Err(Error::TooLong {
                    len: ids.len(),
                    max: self.max_tokens,
                });
            }
            if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab) {
                return Err(Error::Token {
                    id,
                    vocab: self.vocab,
                });
            }
        }
        let (simd, h) = (self.simd, self.hidden);
        let lens: Vec<usize> = sentences.iter().map(|s| s.len()).collect();
        let rows: usize = lens.iter().sum();
        let mut x = vec![0f32; rows * h];
        let tokens = sentences
            .iter()
            .flat_map(|ids| ids.iter().enumerate())
            .zip(x.chunks_exact_mut(h));
        for ((pos, &id), row) in tokens {
            let word = &self.word[id as usize * h..(id as usize + 1) * h];
            let place = &self.position[pos * h..(pos + 1) * h];
            simd.vectorize(
                #[inline(always)]
                || {
                    for (((o, a), b), c) in
                        row.iter_mut().zip(word).zip(place).zip(&self.token_type)
                    {
                        *o = a + b + c;
                    }
                },
            );
        }
        self.layer_norm(&mut x, &self.norm);
        let mut q = Rows::default();
        let (mut qkv, mut tmp, mut up) = (Vec::new(), Vec::new(), Vec::new());
        let mut ctx = vec![0f32; rows * h];
        for layer in &self.layers {
            Rows::quantize(simd, &x, h, &mut q);
            layer.qkv.forward(simd, &q, &mut qkv);
            self.attention(&qkv, &lens, &mut ctx);
            Rows::quantize(simd, &ctx, h, &mut q);
            layer.out.forward(simd, &q, &mut tmp);
            add(simd, &mut x, &tmp);
            self.layer_norm(&mut x, &layer.norm1);
            Rows::quantize(simd, &x, h, &mut q);
            layer.up.forward_then(simd, &q, &mut up, gelu_tanh);
            Rows::quantize(simd, &up, layer.up.outputs, &mut q);
            layer.down.forward(simd, &q, &mut tmp);
            add(simd, &mut x, &tmp);
            self.layer_norm(&mut x, &layer.norm2);
        }
        let mut out = Vec::with_capacity(sentences.len());
        let mut start = 0;
        for &len in &lens {
            let mut mean = vec![0f32; h];
            for row in x[start * h..(start + len) * h].chunks_exact(h) {
                mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
            }
            if len > 0 {
                mean.iter_mut().for_each(|m| *m /= len as f32);
            }
            out.push(mean);
            start += len;
        }
        Ok(out)
    }

    /// Layer norm of every row of `x`, in place.
    fn layer_norm(&self, x: &mut [f32], norm: &Norm) {
        let (simd, h, eps) = (self.simd, self.hidden, self.eps);
        x.par_chunks_mut(h * 32).for_each(|part| {
            simd.vectorize(
                #[inline(always)]
                || {
                    for row in part.chunks_exact_mut(h) {
                        let mean = lanes_sum(row) / h as f32;
                        row.iter_mut().for_each(|v| *v -= mean);
                        let var = lanes_dot(row, row) / h as f32;
                        let inv = 1.0 / (var + eps).sqrt();
                        for ((v, g), b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
                            *v = *v * inv * g + b;
                        }
                    }
                },
            )
        });
    }

    /// Self-attention of each sentence over its own tokens: `qkv` holds
    /// `[query | key | value]` per token; `ctx` gets the heads' outputs.
    fn attention(&self, qkv: &[f32], lens: &[usize], ctx: &mut [f32]) {
        let (simd, h) = (self.simd, self.hidden);
        let mut parts = Vec::with_capacity(lens.len());
        let (mut rest, mut start) = (&mut ctx[..], 0);
        for &len in lens {
            let (part, tail) = rest.split_at_mut(len * h);
            parts.push((&qkv[start * 3 * h..(start + len) * 3 * h], part));
            rest = tail;
            start += len;
        }
        parts.into_par_iter().for_each(|(qkv, out)| {
            simd.vectorize(
                #[inline(always)]
                || attend(qkv, out, h, self.heads),
            )
        });
    }
}

/// Scaled dot-product attention of one sentence (`len` tokens), all heads.
#[inline(always)]
fn attend(qkv: &[f32], out: &mut [f32], hidden: usize, heads: usize) {
    let len = out.len() / hidden;
    let dim = hidden / heads;
    let scale = 1.0 / (dim as f32).sqrt();
    let mut keys = vec![0f32; dim * len]; // transposed: one row per dimension
    let mut values = vec![0f32; len * dim];
    let mut scores = vec![0f32; len];
    for head in 0..heads {
        let (q0, k0, v0) = (head * dim, hidden + head * dim, 2 * hidden + head * dim);
        for j in 0..len {
            let row = &qkv[j * 3 * hidden..(j + 1) * 3 * hidden];
            for d in 0..dim {
                keys[d * len + j] = row[k0 + d];
            }
            values[j * dim..(j + 1) * dim].copy_from_slice(&row[v0..v0 + dim]);
        }
        for i in 0..len {
            let query = &qkv[i * 3 * hidden + q0..i * 3 * hidden + q0 + dim];
            scores.fill(0.0);
            for (d, &qd) in query.iter().enumerate() {
                let qd = qd * scale;
                for (s, k) in scores.iter_mut().zip(&keys[d * len..(d + 1) * len]) {
                    *s += qd * k;
                }
            }
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            let mut total = 0.0;
            for s in scores.iter_mut() {
                *s = exp(*s - max);
                total += *s;
            }
            let o = &mut out[i * hidden + q0..i * hidden + q0 + dim];
            o.fill(0.0);
            for (j, &p) in scores.iter().enumerate() {
                let p = p / total;
                for (o, v) in o.iter_mut().zip(&values[j * dim..(j + 1) * dim]) {
                    *o += p * v;
                }
            }
        }
    }
}

#[inline(always)]
fn add(simd: Simd, x: &mut [f32], y: &[f32]) {
    simd.vectorize(
        #[inline(always)]
        || x.iter_mut().zip(y).for_each(|(a, b)| *a += b),
    );
}

/// A sum in 16 independent lanes, so it vectorises (the order differs from
/// a sequential sum only by rounding).
#[inline(always)]
fn lanes_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn lanes_dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (cx, cy) = (x.chunks_exact(16), y.chunks_exact(16));
    let tail: f32 = cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in cx.zip(cy) {
        for ((s, u), v) in acc.iter_mut().zip(a).zip(b) {
            *s += u * v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `eˣ` without a library call (so loops using it vectorise): `2ⁿ` from the
/// exponent bits times `e^r` (Taylor, degree 6, |r| ≤ ln 2 / 2); relative
/// error about 10⁻⁶ over the clamped range.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // ln 2 in two parts, so `n · ln 2` loses nothing for |n| ≤ 127.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let n = round(x * std::f32::consts::LOG2_E);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// GELU in its tanh form (within 10⁻³ of the erf form BERT was trained
/// with, far under the int8 layers' own rounding).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    let u = C * (x + 0.044_715 * x * x * x);
    let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
    0.5 * x * (1.0 + tanh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_close_to_the_library_one() {
        for i in -870..=880 {
            let x = i as f32 / 10.0;
            let (got, want) = (exp(x), x.exp());
            assert!(
                ((got - want) / want).abs() < 2e-6,
                "exp({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_is_close_to_the_erf_form() {
        // x·Φ(x), Φ from tables of the normal distribution.
        for (x, want) in [
            (-3.0f32, -0.004_049_7),
            (-1.0, -0.158_655_3),
            (0.0, 0.0),
            (0.5, 0.345_731_4),
            (1.0, 0.841_344_7),
            (2.0, 1.954_499_7),
            (4.0, 3.999_873_3),
        ] {
            assert!((gelu_tanh(x) - want).abs() < 1e-3, "gelu({x})");
        }
    }
}
