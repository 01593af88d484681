//! Semantic search over the library's lines: the embedding model, one vector
//! per subtitle line (its caption), and which clip each line is the cue of.
//!
//! *Description* search finds the lines most like the query and returns
//! their clips. *Answer* search finds the lines most like the query and
//! returns the clip that follows each (whose cue that line is), so no second
//! vector per clip is needed.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wire::v1::{CatalogFilm, Clip};

use crate::embed::{self, DIM, Embedder};
use crate::vectors::{self, VectorIndex};

/// Hits below this cosine similarity are not offered: unrelated lines of
/// MiniLM score about 0–0.2, paraphrases 0.5 and up. Without a floor every
/// query would "match" something, and the caller could no longer tell that
/// nothing in the library is like it.
pub const MIN_SIMILARITY: f32 = 0.3;

/// Query vectors kept: llm asks for the same words in answer mode, then in
/// description mode, then again without exclusions; embedding is most of a
/// search's time.
const RECENT_QUERIES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Embed(#[from] embed::Error),
    #[error(transparent)]
    Vectors(#[from] vectors::Error),
    #[error("{rows} vectors for {clips} lines")]
    Rows { rows: usize, clips: usize },
    #[error("vector row {row} names clip {clip}, but the library has {len}")]
    RowClip { row: usize, clip: usize, len: usize },
    #[error("the stored vectors of {film} are damaged ({bytes} bytes for {lines} lines)")]
    Stored {
        film: String,
        bytes: usize,
        lines: usize,
    },
    #[error(transparent)]
    Save(#[from] crate::ingest::Error),
}

/// A loaded model and its identity (what stored vectors are checked against).
pub struct Loaded {
    pub embedder: Embedder,
    pub id: String,
}

/// Bytes of one stored vector: an f32 scale and [`DIM`] int8 codes.
const STORED_BYTES: usize = 4 + DIM;

/// The model in `dir`, its kernels capped at `simd`, or `None` with one
/// warning saying why (no model configured, or it cannot be loaded): search
/// is then lexical only.
pub fn load(dir: Option<&Path>, simd: encoder::SimdCap) -> Option<Loaded> {
    let Some(dir) = dir else {
        tracing::warn!(
            "Search is lexical only: no embedding model is configured (set CINEMA_EMBEDDING_MODEL; scripts/setup fetches one)."
        );
        return None;
    };
    match Embedder::load(dir) {
        Ok(mut embedder) => {
            embedder.set_simd(encoder::Simd::best(simd));
            Some(Loaded {
                id: model_id(dir),
                embedder,
            })
        }
        Err(e) => {
            tracing::warn!(model = %dir.display(), error = %e, "Search is lexical only: the embedding model cannot be used.");
            None
        }
    }
}

/// A model's identity: the folder's name and a hash of its files' sizes, its
/// configuration and the encoder's numerics (a replaced model, or vectors
/// made by another encoder, give another id, and the lines are embedded
/// again).
pub fn model_id(dir: &Path) -> String {
    let mut h = Sha256::new();
    h.update(encoder::NUMERICS.as_bytes());
    for name in ["model.safetensors", "tokenizer.json", "config.json"] {
        let path = dir.join(name);
        h.update(name.as_bytes());
        h.update(
            std::fs::metadata(&path)
                .map_or(0, |m| m.len())
                .to_le_bytes(),
        );
        if name == "config.json" {
            h.update(std::fs::read(&path).unwrap_or_default());
        }
    }
    let digest: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{name}:{digest}")
}

/// The captions of a film's clips that get a vector, in clip order.
fn captions(entry: &CatalogFilm) -> Vec<&str> {
    entry
        .clips
        .iter()
        .map(|c| c.caption.as_str())
        .filter(|c| !c.trim().is_empty())
        .collect()
}

/// Embeds the lines of every readable film whose stored vectors are missing
/// or another model's, and saves each such film with `save`. Returns how
/// many lines were embedded.
pub fn ensure_vectors(
    model: &Loaded,
    catalog: &mut [CatalogFilm],
    mut save: impl FnMut(&CatalogFilm) -> Result<(), crate::ingest::Error>,
) -> Result<usize, Error> {
    let started = Instant::now();
    let mut embedded = 0;
    for entry in catalog.iter_mut().filter(|e| e.error.is_empty()) {
        let texts = captions(entry);
        if entry.embedding_model == model.id && entry.vectors.len() == texts.len() * STORED_BYTES {
            continue;
        }
        let mut bytes = Vec::with_capacity(texts.len() * STORED_BYTES);
        for chunk in texts.chunks(256) {
            for v in model.embedder.embed(chunk)? {
                let scale = v
                    .iter()
                    .fold(0f32, |m, x| m.max(x.abs()))
                    .max(f32::MIN_POSITIVE);
                bytes.extend(scale.to_le_bytes());
                bytes.extend(
                    v.iter()
                        .map(|x| ((x / scale) * 127.0).round().clamp(-127.0, 127.0) as i8 as u8),
                );
            }
        }
        embedded += texts.len();
        entry.vectors = bytes;
        entry.embedding_model = model.id.clone();
        save(entry)?;
    }
    if embedded > 0 {
        tracing::info!(
            lines = embedded,
            seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
            "Embedded new lines of the library (kept in the catalog)."
        );
    }
    Ok(embedded)
}

/// A film's stored vectors as floats, [`DIM`] per captioned clip.
pub fn stored_vectors(model: &Loaded, entry: &CatalogFilm) -> Result<Vec<f32>, Error> {
    let lines = captions(entry).len();
    let damaged = || Error::Stored {
        film: entry.rel_path.clone(),
        bytes: entry.vectors.len(),
        lines,
    };
    if entry.embedding_model != model.id || entry.vectors.len() != lines * STORED_BYTES {
        return Err(damaged());
    }
    let mut out = Vec::with_capacity(lines * DIM);
    for v in entry.vectors.chunks_exact(STORED_BYTES) {
        let scale = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        if !scale.is_finite() {
            return Err(damaged());
        }
        out.extend(v[4..].iter().map(|&b| f32::from(b as i8) * scale / 127.0));
    }
    Ok(out)
}

/// A clip's cue's and own line's cosines with a query (`None` where the
/// line has no vector).
pub type Likeness = (Option<f32>, Option<f32>);

/// The model and the library's vectors.
pub struct Semantic {
    embedder: Embedder,
    index: VectorIndex,
    /// The clip each vector row is the caption of.
    row_clip: Vec<usize>,
    /// The clip each row's caption is the cue of (the next line's clip).
    row_answer: Vec<Option<usize>>,
    /// The row of each clip's caption (clips without a caption have none).
    clip_row: Vec<Option<usize>>,
    /// The last queries' vectors, newest last.
    recent: Mutex<VecDeque<(String, Vec<f32>)>>,
}

impl std::fmt::Debug for Semantic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semantic")
            .field("embedder", &self.embedder)
            .field("rows", &self.index.len())
            .finish()
    }
}

impl Semantic {
    /// The index of vectors kept in the catalog: `vectors` holds [`DIM`]
    /// floats for every clip with a caption, in clip order.
    pub fn from_stored(model: Loaded, vectors: &[f32], clips: &[Clip]) -> Result<Semantic, Error> {
        let row_clip: Vec<usize> = clips
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.caption.trim().is_empty())
            .map(|(i, _)| i)
            .collect();
        let id = model.id.clone();
        let semantic = Semantic::from_vectors(model.embedder, vectors, row_clip, clips)?;
        tracing::info!(
            model = %id,
            lines = semantic.index.len(),
            vector_bytes = semantic.index.bytes(),
            "Search is hybrid (lexical and semantic)."
        );
        Ok(semantic)
    }

    /// The index from vectors already made (a stored catalog): `vectors` holds
    /// [`DIM`] floats per row, `row_clip[r]` is the clip whose caption row `r`
    /// embeds.
    pub fn from_vectors(
        embedder: Embedder,
        vectors: &[f32],
        row_clip: Vec<usize>,
        clips: &[Clip],
    ) -> Result<Semantic, Error> {
        let index = VectorIndex::from_flat(vectors, DIM, embedder.encoder().simd())?;
        if index.len() != row_clip.len() {
            return Err(Error::Rows {
                rows: index.len(),
                clips: row_clip.len(),
            });
        }
        if let Some((row, &clip)) = row_clip
            .iter()
            .enumerate()
            .find(|(_, c)| **c >= clips.len())
        {
            return Err(Error::RowClip {
                row,
                clip,
                len: clips.len(),
            });
        }
        let mut clip_row = vec![None; clips.len()];
        for (row, &clip) in row_clip.iter().enumerate() {
            clip_row[clip] = Some(row);
        }
        let row_answer = row_clip
            .iter()
            .map(|&i| {
                let (line, next) = (&clips[i], clips.get(i + 1)?);
                (next.film_id == line.film_id && next.cue == line.caption).then_some(i + 1)
            })
            .collect();
        Ok(Semantic {
            embedder,
            index,
            row_clip,
            row_answer,
            clip_row,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_QUERIES)),
        })
    }

    /// The query's vector, from the recent ones when it was just asked.
    fn query_vector(&self, query: &str) -> Result<Vec<f32>, Error> {
        let cached = |recent: &VecDeque<(String, Vec<f32>)>| {
            recent
                .iter()
                .find(|(q, _)| q == query)
                .map(|(_, v)| v.clone())
        };
        if let Some(v) = self.recent.lock().ok().and_then(|r| cached(&r)) {
            return Ok(v);
        }
        let v = self.embedder.embed_one(query)?;
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_QUERIES {
                recent.pop_front();
            }
            recent.push_back((query.to_string(), v.clone()));
        }
        Ok(v)
    }

    /// For each of `clips`: the cosine of `query` with the clip's cue (the
    /// line before it, when that line is in the index) and with its own line.
    pub fn answer_similarities(
        &self,
        query: &str,
        clips: &[usize],
    ) -> Result<Vec<Likeness>, Error> {
        let q = self.query_vector(query)?;
        let row = |c: usize| self.clip_row.get(c).copied().flatten();
        let cue_row = |c: usize| {
            let r = row(c.checked_sub(1)?)?;
            (self.row_answer[r] == Some(c)).then_some(r)
        };
        let rows: Vec<(Option<usize>, Option<usize>)> =
            clips.iter().map(|&c| (cue_row(c), row(c))).collect();
        let flat: Vec<usize> = rows
            .iter()
            .flat_map(|&(a, b)| [a.unwrap_or(usize::MAX), b.unwrap_or(usize::MAX)])
            .collect();
        let sims = self.index.similarities(&q, &flat);
        Ok(rows
            .iter()
            .zip(sims.chunks_exact(2))
            .map(|(&(cue, own), s)| (cue.map(|_| s[0]), own.map(|_| s[1])))
            .collect())
    }

    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    pub fn index(&self) -> &VectorIndex {
        &self.index
    }

    /// Up to `k` clips, best first, with the cosine similarity of their line
    /// (description) or of their cue (answer) to `query`; only clips that
    /// `accept` passes, none below [`MIN_SIMILARITY`].
    pub fn search(
        &self,
        query: &str,
        answer: bool,
        k: usize,
        accept: impl Fn(usize) -> bool,
    ) -> Result<Vec<(usize, f32)>, Error> {
        let q = self.query_vector(query)?;
        let clip_of = |row: usize| {
            if answer {
                self.row_answer[row]
            } else {
                Some(self.row_clip[row])
            }
        };
        let hits = self
            .index
            .search(&q, k, |row| clip_of(row).is_some_and(&accept));
        Ok(hits
            .into_iter()
            .filter(|h| h.score >= MIN_SIMILARITY)
            .filter_map(|h| Some((clip_of(h.row)?, h.score)))
            .collect())
    }
}
