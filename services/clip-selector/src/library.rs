//! The library: films found under a root folder, their dialogue clips, and a
//! lexical (BM25, tantivy) index over captions and cues, fused with semantic
//! search (`crate::semantic`) when an embedding model is configured.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{FAST, Field, STORED, STRING, Schema, TEXT};
use tantivy::{Index, IndexReader, doc};
use wire::v1::{Clip, ClipKind, Film, SearchMode, SearchRequest};

use crate::semantic::{self, Semantic};
use crate::{fusion, srt};

pub const VIDEO_EXTENSIONS: &[&str] = &["mp4", "mkv", "avi", "webm", "mov", "m4v"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("library folder {0} does not exist")]
    MissingRoot(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("semantic search: {0}")]
    Semantic(#[from] semantic::Error),
}

/// How dialogue clips are cut around their subtitle lines.
#[derive(Debug, Clone, Copy)]
pub struct CutOptions {
    /// Padding on each side of a line, never past the neighbours' words.
    pub pad_s: f64,
    /// Minimum clip length.
    pub min_len_s: f64,
}

impl Default for CutOptions {
    fn default() -> Self {
        CutOptions {
            pad_s: 0.3,
            min_len_s: 1.0,
        }
    }
}

/// A film of the library and where its file is (never sent on the wire).
#[derive(Debug, Clone)]
pub struct FilmEntry {
    pub film: Film,
    pub path: PathBuf,
}

/// The clip's position in `clips`, a fast field: a hit needs no stored
/// document read.
const ROW_FIELD: &str = "row";

struct Fields {
    caption: Field,
    cue: Field,
}

pub struct Library {
    root: PathBuf,
    films: Vec<FilmEntry>,
    clips: Vec<Clip>,
    by_id: HashMap<String, usize>,
    film_by_id: HashMap<String, usize>,
    reader: IndexReader,
    index: Index,
    fields: Fields,
    /// Present when the embedding model loaded: search is then hybrid.
    semantic: Option<Semantic>,
}

/// Candidates taken from each of the lexical and semantic lists for fusion.
const FUSE_DEPTH: usize = 50;

/// A short stable id: `prefix` + 12 hex digits of SHA-256 over `parts`.
fn stable_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(str::as_bytes(p));
        h.update([0]);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// Cuts one dialogue clip per cue, padded, never overlapping the neighbours'
/// words, at least `min_len_s` long where the film allows it.
pub fn cut_clips(
    film_id: &str,
    title: &str,
    rel: &str,
    cues: &[srt::Cue],
    opt: CutOptions,
) -> Vec<Clip> {
    let mut clips = Vec::with_capacity(cues.len());
    for (i, cue) in cues.iter().enumerate() {
        let prev_end = if i > 0 { cues[i - 1].end_s } else { 0.0 };
        let next_start = cues.get(i + 1).map_or(f64::INFINITY, |c| c.start_s);
        let mut start = (cue.start_s - opt.pad_s)
            .max(prev_end.min(cue.start_s))
            .max(0.0);
        let mut end = (cue.end_s + opt.pad_s).min(next_start.max(cue.end_s));
        if end - start < opt.min_len_s {
            let missing = opt.min_len_s - (end - start);
            end = (end + missing).min(next_start.max(cue.end_s));
            start = (end - opt.min_len_s)
                .max(prev_end.min(cue.start_s))
                .max(0.0);
        }
        let start_ms = ((start * 1000.0).round() as i64).to_string();
        clips.push(Clip {
            id: stable_id("c", &[rel, &i.to_string(), &start_ms]),
            film_id: film_id.to_string(),
            film_title: title.to_string(),
            start_s: start,
            end_s: end,
            caption: cue.text.clone(),
            cue: if i > 0 {
                cues[i - 1].text.clone()
            } else {
                String::new()
            },
            next_line: cues.get(i + 1).map(|c| c.text.clone()).unwrap_or_default(),
            kind: ClipKind::Dialogue as i32,
            line_index: i as u32,
            thumbnail: String::new(),
            keyframe_start_s: start,
            duration_s: cue.end_s - cue.start_s,
        });
    }
    clips
}

fn title_of(stem: &str) -> String {
    let words: Vec<String> = stem
        .split(['-', '_', '.', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    words.join(" ")
}

fn find_videos(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            find_videos(&path, out)?;
        } else if path
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| VIDEO_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

impl Library {
    /// Scans `root` for films with `.srt` sidecars and indexes their lines.
    /// A film whose subtitles cannot be read is reported and skipped. With
    /// `embedding_model` (a model folder) every line is embedded too and
    /// search is hybrid; without it, or if it cannot be loaded, search is
    /// lexical and one warning says why.
    pub fn open(
        root: &Path,
        opt: CutOptions,
        embedding_model: Option<&Path>,
    ) -> Result<Library, Error> {
        if !root.is_dir() {
            return Err(Error::MissingRoot(root.to_path_buf()));
        }
        let root = root.canonicalize().map_err(|source| Error::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let mut videos = Vec::new();
        find_videos(&root, &mut videos)?;
        videos.sort();
        let mut films = Vec::new();
        let mut clips = Vec::new();
        for video in videos {
            let rel = video
                .strip_prefix(&root)
                .unwrap_or(&video)
                .to_string_lossy()
                .to_string();
            let stem = video
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            let srt_path = video.with_extension("srt");
            let cues = match std::fs::read(&srt_path) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let (cues, skipped) = srt::parse(&text);
                    if skipped > 0 {
                        tracing::warn!(film = %rel, skipped, "Skipped unreadable subtitle blocks.");
                    }
                    cues
                }
                Err(_) => {
                    tracing::warn!(film = %rel, "No .srt beside the film; it has no dialogue clips.");
                    Vec::new()
                }
            };
            let film_id = stable_id("f", &[&rel]);
            let title = title_of(&stem);
            let film_clips = cut_clips(&film_id, &title, &rel, &cues, opt);
            films.push(FilmEntry {
                film: Film {
                    id: film_id,
                    title,
                    duration_s: film_clips.last().map_or(0.0, |c| c.end_s),
                    clip_count: film_clips.len() as u32,
                    scene_count: 0,
                    subtitles: if cues.is_empty() {
                        String::new()
                    } else {
                        "srt".into()
                    },
                },
                path: video,
            });
            clips.extend(film_clips);
        }
        let semantic = Semantic::open(embedding_model, &clips);
        Self::build(root, films, clips, semantic)
    }

    fn build(
        root: PathBuf,
        films: Vec<FilmEntry>,
        clips: Vec<Clip>,
        semantic: Option<Semantic>,
    ) -> Result<Library, Error> {
        let mut schema = Schema::builder();
        let id = schema.add_text_field("id", STRING | STORED);
        let caption = schema.add_text_field("caption", TEXT);
        let cue = schema.add_text_field("cue", TEXT);
        let row = schema.add_u64_field(ROW_FIELD, FAST);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 50_000_000)?;
        for (i, c) in clips.iter().enumerate() {
            writer.add_document(doc!(
                id => c.id.clone(),
                caption => c.caption.clone(),
                cue => c.cue.clone(),
                row => i as u64,
            ))?;
        }
        writer.commit()?;
        let reader = index.reader()?;
        let by_id = clips
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        let film_by_id = films
            .iter()
            .enumerate()
            .map(|(i, f)| (f.film.id.clone(), i))
            .collect();
        Ok(Library {
            root,
            films,
            clips,
            by_id,
            film_by_id,
            reader,
            index,
            fields: Fields { caption, cue },
            semantic,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn len(&self) -> usize {
        self.clips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    pub fn films(&self) -> impl Iterator<Item = &Film> {
        self.films.iter().map(|f| &f.film)
    }

    pub fn clip(&self, id: &str) -> Option<&Clip> {
        self.by_id.get(id).map(|&i| &self.clips[i])
    }

    /// The file of a film, known only from the index (never from the wire).
    pub fn film_path(&self, film_id: &str) -> Option<&Path> {
        self.film_by_id
            .get(film_id)
            .map(|&i| self.films[i].path.as_path())
    }

    /// Whether search is hybrid (the embedding model loaded).
    pub fn is_semantic(&self) -> bool {
        self.semantic.is_some()
    }

    /// The embedding model and vectors, when search is hybrid.
    pub fn semantic(&self) -> Option<&Semantic> {
        self.semantic.as_ref()
    }

    /// Search. *Description* matches captions; *answer* matches cues (the
    /// line before a clip), so the hit is the line that followed. Lexical
    /// (BM25) and, with the embedding model, semantic hits are fused by
    /// reciprocal rank; the score is then the fused score.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<(Clip, f32)>, Error> {
        let limit = (req.limit as usize).clamp(1, 100);
        let answer = SearchMode::try_from(req.mode) == Ok(SearchMode::Answer);
        let Some(semantic) = &self.semantic else {
            return self.lexical(req, answer, limit);
        };
        let depth = limit.max(FUSE_DEPTH);
        let lexical: Vec<String> = self
            .lexical(req, answer, depth)?
            .into_iter()
            .map(|(c, _)| c.id)
            .collect();
        let close: Vec<String> = semantic
            .search(&req.query, answer, depth, |i| {
                self.accepts(req, &self.clips[i])
            })?
            .into_iter()
            .map(|(i, _)| self.clips[i].id.clone())
            .collect();
        Ok(fusion::rrf(&[&lexical, &close], fusion::K)
            .into_iter()
            .take(limit)
            .filter_map(|(id, score)| Some((self.clip(&id)?.clone(), score)))
            .collect())
    }

    /// Lexical search alone (BM25), as when no embedding model is loaded.
    pub fn search_lexical(&self, req: &SearchRequest) -> Result<Vec<(Clip, f32)>, Error> {
        let limit = (req.limit as usize).clamp(1, 100);
        let answer = SearchMode::try_from(req.mode) == Ok(SearchMode::Answer);
        self.lexical(req, answer, limit)
    }

    /// BM25 over captions (description) or cues (answer), filtered.
    fn lexical(
        &self,
        req: &SearchRequest,
        answer: bool,
        limit: usize,
    ) -> Result<Vec<(Clip, f32)>, Error> {
        let field = if answer {
            self.fields.cue
        } else {
            self.fields.caption
        };
        let parser = QueryParser::for_index(&self.index, vec![field]);
        let (query, _errors) = parser.parse_query_lenient(&req.query);
        let searcher = self.reader.searcher();
        let want = limit + req.exclude_ids.len() + 50;
        let top = searcher.search(&query, &TopDocs::with_limit(want))?;
        let rows = searcher
            .segment_readers()
            .iter()
            .map(|s| s.fast_fields().u64(ROW_FIELD))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::new();
        for (score, addr) in top {
            let Some(clip) = rows[addr.segment_ord as usize]
                .first(addr.doc_id)
                .and_then(|i| self.clips.get(i as usize))
            else {
                continue;
            };
            if self.accepts(req, clip) {
                out.push((clip.clone(), score));
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn accepts(&self, req: &SearchRequest, clip: &Clip) -> bool {
        let len = clip.end_s - clip.start_s;
        !req.exclude_ids.iter().any(|x| x == &clip.id)
            && (req.film_id.is_empty() || req.film_id == clip.film_id)
            && (req.min_duration_s <= 0.0 || len >= req.min_duration_s)
            && (req.max_duration_s <= 0.0 || len <= req.max_duration_s)
    }

    /// Every clip in library order, for fallbacks ("the library is exhausted").
    pub fn clips(&self) -> &[Clip] {
        &self.clips
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(a: f64, b: f64, t: &str) -> srt::Cue {
        srt::Cue {
            start_s: a,
            end_s: b,
            text: t.into(),
        }
    }

    #[test]
    fn clips_are_padded_without_overlapping_neighbours() {
        let cues = [
            cue(1.0, 2.0, "one"),
            cue(2.1, 2.3, "two"),
            cue(5.0, 6.0, "three"),
        ];
        let clips = cut_clips("f", "F", "f.mp4", &cues, CutOptions::default());
        assert_eq!(clips.len(), 3);
        assert!((clips[0].start_s - 0.7).abs() < 1e-9);
        // Never into the next line's words.
        assert!((clips[0].end_s - 2.1).abs() < 1e-9);
        // The short line grows to the minimum length, forward only up to the next words.
        assert!(clips[1].start_s >= 2.0 - 1e-9 && clips[1].end_s <= 5.0 + 1e-9);
        assert!(clips[1].end_s - clips[1].start_s >= 1.0 - 1e-9);
        assert_eq!(clips[1].cue, "one");
        assert_eq!(clips[1].next_line, "three");
        // Stable ids.
        let again = cut_clips("f", "F", "f.mp4", &cues, CutOptions::default());
        assert_eq!(clips[2].id, again[2].id);
        assert_ne!(clips[0].id, clips[1].id);
    }

    #[test]
    fn titles_from_file_names() {
        assert_eq!(title_of("the-last_summer"), "The Last Summer");
    }
}
