//! The library as served: the catalog's films and clips in memory, a lexical
//! (BM25, tantivy) index over captions and cues, fused with semantic search
//! (`crate::semantic`) when an embedding model is configured. Ingest
//! (reading films into the catalog) lives in [`crate::ingest`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{FAST, Field, Schema, TEXT};
use tantivy::{Index, IndexReader, doc};
use wire::v1::{CatalogFilm, Clip, ClipKind, Film, IngestSummary, SearchMode, SearchRequest};

use crate::answer::{self, Evidence, LineInfo};
use crate::fusion;
use crate::ingest::{self, CutOptions, IndexDir, IngestOptions, Progress};
use crate::lines;
use crate::semantic::{self, Semantic};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ingest(#[from] ingest::Error),
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("semantic search: {0}")]
    Semantic(#[from] semantic::Error),
}

/// A film of the library and where its file is (never sent on the wire).
#[derive(Debug, Clone)]
pub struct FilmEntry {
    pub film: Film,
    pub path: PathBuf,
}

struct Fields {
    caption: Field,
    cue: Field,
}

/// The fast field holding a document's clip (its position in `clips`).
const ROW_FIELD: &str = "row";

/// Candidates taken from each of the lexical and semantic lists for fusion.
const FUSE_DEPTH: usize = 50;

pub struct Library {
    root: PathBuf,
    thumbs: Option<PathBuf>,
    films: Vec<FilmEntry>,
    clips: Vec<Clip>,
    by_id: HashMap<String, usize>,
    film_by_id: HashMap<String, usize>,
    /// Films with dialogue clips: their scene clips are not search hits.
    spoken_films: std::collections::HashSet<String>,
    reader: IndexReader,
    index: Index,
    fields: Fields,
    summary: IngestSummary,
    /// Present when the embedding model loaded: search is then hybrid.
    semantic: Option<Semantic>,
    /// Each clip's line and cue as answer search reads them.
    info: Vec<LineInfo>,
}

/// One search hit: the clip, its score and, in answer mode, why it matched.
#[derive(Debug, Clone)]
pub struct Found {
    pub clip: Clip,
    /// Answer mode: the chance it answers acceptably (0 to 1). Description
    /// mode: the fused rank score.
    pub score: f32,
    pub reason: String,
}

impl Library {
    /// Ingests `root`'s dialogue lines only (no scenes, no thumbnails;
    /// catalog in `root/.cinema-index`) and loads it, hybrid with
    /// `embedding_model`: for tools, tests and benchmarks.
    pub fn open(
        root: &Path,
        cut: CutOptions,
        embedding_model: Option<&Path>,
    ) -> Result<Library, Error> {
        let opt = IngestOptions {
            cut,
            scenes: false,
            thumbnails: false,
            embedding_model: embedding_model.map(Path::to_path_buf),
            ..IngestOptions::default()
        };
        Self::ingest(
            root,
            &IndexDir::inside(root),
            &opt,
            &ingest::LogProgress,
            "",
        )
    }

    /// Brings the catalog in `index` up to date with `root` and loads it.
    /// Thumbnail URLs start with `media_base` (`{media_base}/thumbnails/…`).
    pub fn ingest(
        root: &Path,
        index: &IndexDir,
        opt: &IngestOptions,
        progress: &dyn Progress,
        media_base: &str,
    ) -> Result<Library, Error> {
        let (mut catalog, summary) = ingest::ingest(root, index, opt, progress)?;
        // Lines not embedded yet (new films, another model) are embedded
        // now and kept in the catalog.
        let embedder = semantic::load(opt.embedding_model.as_deref(), opt.simd);
        if let Some(e) = &embedder {
            semantic::ensure_vectors(e, &mut catalog, |entry| index.save(entry))?;
        }
        let root = root.canonicalize().map_err(|source| ingest::Error::Io {
            path: root.to_path_buf(),
            source,
        })?;
        Self::from_catalog(root, index, catalog, summary, media_base, embedder)
    }

    /// The library as the catalog in `index` last had it: the films whose
    /// entries were made with today's settings, served while a new ingest
    /// runs (a restart of a big library answers at once). `None` when the
    /// catalog holds none. Vectors made by another model are not used:
    /// search is lexical until the ingest ends.
    pub fn stored(
        root: &Path,
        index: &IndexDir,
        opt: &IngestOptions,
        media_base: &str,
    ) -> Result<Option<Library>, Error> {
        let settings = opt.settings();
        let catalog: Vec<CatalogFilm> = index
            .load()
            .into_iter()
            .filter(|e| {
                e.version == ingest::CATALOG_VERSION && e.settings == settings && e.error.is_empty()
            })
            .collect();
        if catalog.is_empty() {
            return Ok(None);
        }
        let root = root.canonicalize().map_err(|source| ingest::Error::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let summary = IngestSummary {
            films: catalog.len() as u32,
            unchanged: catalog.len() as u32,
            ..Default::default()
        };
        let embedder = semantic::load(opt.embedding_model.as_deref(), opt.simd);
        let with_vectors = embedder.is_some();
        match Self::from_catalog(
            root.clone(),
            index,
            catalog.clone(),
            summary.clone(),
            media_base,
            embedder,
        ) {
            Ok(lib) => Ok(Some(lib)),
            Err(Error::Semantic(_)) if with_vectors => {
                Self::from_catalog(root, index, catalog, summary, media_base, None).map(Some)
            }
            Err(e) => Err(e),
        }
    }

    /// The library of a catalog: films that could be read, with their clips;
    /// with an embedder, the catalog's vectors make search hybrid.
    pub fn from_catalog(
        root: PathBuf,
        index: &IndexDir,
        catalog: Vec<CatalogFilm>,
        summary: IngestSummary,
        media_base: &str,
        embedder: Option<semantic::Loaded>,
    ) -> Result<Library, Error> {
        let mut films = Vec::new();
        let mut clips = Vec::new();
        let mut vectors = Vec::new();
        for entry in catalog {
            if !entry.error.is_empty() {
                continue;
            }
            if let Some(e) = &embedder {
                vectors.extend(semantic::stored_vectors(e, &entry)?);
            }
            let Some(film) = entry.film else { continue };
            for mut c in entry.clips {
                if !c.thumbnail.is_empty() {
                    c.thumbnail = format!("{media_base}/thumbnails/{}", c.thumbnail);
                }
                clips.push(c);
            }
            films.push(FilmEntry {
                path: root.join(&entry.rel_path),
                film,
            });
        }
        let semantic = match embedder {
            Some(e) => Some(Semantic::from_stored(e, &vectors, &clips)?),
            None => None,
        };
        let mut lib = Self::build(root, films, clips, semantic)?;
        lib.thumbs = Some(index.thumbs());
        lib.summary = summary;
        Ok(lib)
    }

    /// A library of given films and clips, without a catalog (benchmarks);
    /// with `semantic`, search is hybrid.
    pub fn from_clips(
        root: PathBuf,
        films: Vec<FilmEntry>,
        clips: Vec<Clip>,
        semantic: Option<Semantic>,
    ) -> Result<Library, Error> {
        Self::build(root, films, clips, semantic)
    }

    fn build(
        root: PathBuf,
        films: Vec<FilmEntry>,
        mut clips: Vec<Clip>,
        semantic: Option<Semantic>,
    ) -> Result<Library, Error> {
        let info = answer::annotate(&mut clips);
        let mut schema = Schema::builder();
        let caption = schema.add_text_field("caption", TEXT);
        let cue = schema.add_text_field("cue", TEXT);
        let row = schema.add_u64_field(ROW_FIELD, FAST);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 50_000_000)?;
        for (i, (c, line)) in clips.iter().zip(&info).enumerate() {
            writer.add_document(doc!(
                caption => c.caption.clone(),
                cue => line.cue_said.clone(),
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
        let spoken_films = clips
            .iter()
            .filter(|c| c.kind == ClipKind::Dialogue as i32)
            .map(|c| c.film_id.clone())
            .collect();
        Ok(Library {
            root,
            spoken_films,
            thumbs: None,
            summary: IngestSummary::default(),
            films,
            clips,
            by_id,
            film_by_id,
            reader,
            index,
            fields: Fields { caption, cue },
            semantic,
            info,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the ingest that made this library did.
    pub fn summary(&self) -> &IngestSummary {
        &self.summary
    }

    /// The thumbnail file of a clip, known only from the index.
    pub fn thumbnail_path(&self, clip_id: &str) -> Option<PathBuf> {
        let clip = self.clip(clip_id)?;
        if clip.thumbnail.is_empty() {
            return None;
        }
        Some(self.thumbs.as_ref()?.join(format!("{}.jpg", clip.id)))
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

    /// The film's path relative to the library root (for synced copies).
    pub fn film_rel_path(&self, film_id: &str) -> Option<String> {
        let path = self.film_path(film_id)?;
        Some(
            path.strip_prefix(&self.root)
                .ok()?
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// Whether search is hybrid (the embedding model loaded).
    pub fn is_semantic(&self) -> bool {
        self.semantic.is_some()
    }

    /// The embedding model and vectors, when search is hybrid.
    pub fn semantic(&self) -> Option<&Semantic> {
        self.semantic.as_ref()
    }

    /// Search. *Description* matches captions: lexical (BM25) and, with the
    /// embedding model, semantic hits fused by reciprocal rank; the score is
    /// the fused score. *Answer* finds clips whose cue (the line before) is
    /// like the query and judges each ([`crate::answer`]): the score is the
    /// chance it answers acceptably, best first.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<(Clip, f32)>, Error> {
        Ok(self
            .search_hits(req)?
            .into_iter()
            .map(|f| (f.clip, f.score))
            .collect())
    }

    /// [`Library::search`], with why each answer matched.
    pub fn search_hits(&self, req: &SearchRequest) -> Result<Vec<Found>, Error> {
        let limit = (req.limit as usize).clamp(1, 100);
        if SearchMode::try_from(req.mode) == Ok(SearchMode::Answer) {
            return self.answers(req, limit);
        }
        let found = |(i, score): (usize, f32)| Found {
            clip: self.clips[i].clone(),
            score,
            reason: String::new(),
        };
        let Some(semantic) = &self.semantic else {
            return Ok(self
                .lexical(req, false, limit)?
                .into_iter()
                .map(found)
                .collect());
        };
        let depth = limit.max(FUSE_DEPTH);
        // BM25 runs beside the query's embedding (most of a search's time).
        let (lexical, close) = rayon::join(
            || self.lexical(req, false, depth),
            || semantic.search(&req.query, false, depth, |i| self.accepts(req, i, false)),
        );
        let lexical: Vec<usize> = lexical?.into_iter().map(|(i, _)| i).collect();
        let close: Vec<usize> = close?.into_iter().map(|(i, _)| i).collect();
        Ok(fusion::rrf(&[&lexical, &close], fusion::K)
            .into_iter()
            .take(limit)
            .map(found)
            .collect())
    }

    /// Answer search: candidates whose cue is like the query, lexically
    /// and (with the model) in meaning, each judged on all the evidence.
    fn answers(&self, req: &SearchRequest, limit: usize) -> Result<Vec<Found>, Error> {
        let depth = limit.max(FUSE_DEPTH);
        let (lexical, close) = match &self.semantic {
            Some(semantic) => rayon::join(
                || self.lexical(req, true, depth),
                || {
                    semantic
                        .search(&req.query, true, depth, |i| self.accepts(req, i, true))
                        .map_err(Error::from)
                },
            ),
            None => (self.lexical(req, true, depth), Ok(Vec::new())),
        };
        let mut candidates: Vec<usize> = Vec::new();
        for (i, _) in lexical?.into_iter().chain(close?) {
            if !candidates.contains(&i) {
                candidates.push(i);
            }
        }
        let meaning = match &self.semantic {
            Some(semantic) => semantic.answer_similarities(&req.query, &candidates)?,
            None => vec![(None, None); candidates.len()],
        };
        let query_words = lines::words(&lines::spoken(&req.query).0);
        let previous = self
            .by_id
            .get(&req.previous_clip_id)
            .map(|&p| &self.clips[p]);
        let asks = req.query.trim_end().ends_with('?');
        let mut judged: Vec<(usize, Evidence, f32)> = candidates
            .into_iter()
            .zip(meaning)
            .map(|(i, (cue_meaning, reply_meaning))| {
                let (clip, line) = (&self.clips[i], &self.info[i]);
                let same_film = previous.is_some_and(|p| p.film_id == clip.film_id);
                let evidence = Evidence {
                    cue_meaning: cue_meaning.or(self.semantic.as_ref().map(|_| 0.0)),
                    reply_meaning: reply_meaning.or(self.semantic.as_ref().map(|_| 0.0)),
                    cue_words: lines::overlap(&query_words, &line.cue_words),
                    reply_words: lines::overlap(&query_words, &line.words),
                    gap_s: line.gap_s,
                    same_speaker: line.same_speaker,
                    same_film,
                    follows_previous: same_film
                        && previous.is_some_and(|p| p.line_index + 1 == clip.line_index),
                    question_for_question: asks && clip.caption.trim_end().ends_with('?'),
                };
                (i, evidence, evidence.calibrated())
            })
            .collect();
        judged.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        Ok(judged
            .into_iter()
            .take(limit)
            .map(|(i, evidence, score)| Found {
                clip: self.clips[i].clone(),
                score,
                reason: evidence.reason(),
            })
            .collect())
    }

    /// Lexical search alone (BM25), as when no embedding model is loaded.
    pub fn search_lexical(&self, req: &SearchRequest) -> Result<Vec<(Clip, f32)>, Error> {
        let limit = (req.limit as usize).clamp(1, 100);
        let answer = SearchMode::try_from(req.mode) == Ok(SearchMode::Answer);
        Ok(self
            .lexical(req, answer, limit)?
            .into_iter()
            .map(|(i, score)| (self.clips[i].clone(), score))
            .collect())
    }

    /// BM25 over captions (description) or cues (answer), filtered: clips
    /// by position, best first.
    fn lexical(
        &self,
        req: &SearchRequest,
        answer: bool,
        limit: usize,
    ) -> Result<Vec<(usize, f32)>, Error> {
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
            let Some(i) = rows[addr.segment_ord as usize]
                .first(addr.doc_id)
                .map(|i| i as usize)
                .filter(|&i| i < self.clips.len())
            else {
                continue;
            };
            if self.accepts(req, i, answer) {
                out.push((i, score));
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Filters, and scenes only of films without dialogue: a film's lines are
    /// answered line by line, not by a scene that runs several together. An
    /// answer is a line said in reply to a line said.
    fn accepts(&self, req: &SearchRequest, i: usize, answer: bool) -> bool {
        let clip = &self.clips[i];
        let len = clip.end_s - clip.start_s;
        let scene_of_spoken =
            clip.kind == ClipKind::Scene as i32 && self.spoken_films.contains(&clip.film_id);
        !scene_of_spoken
            && (!answer || self.info[i].answerable)
            && !req.exclude_ids.iter().any(|x| x == &clip.id)
            && (req.film_id.is_empty() || req.film_id == clip.film_id)
            && (req.min_duration_s <= 0.0 || len >= req.min_duration_s)
            && (req.max_duration_s <= 0.0 || len <= req.max_duration_s)
    }

    /// Every clip in library order, for fallbacks ("the library is exhausted").
    pub fn clips(&self) -> &[Clip] {
        &self.clips
    }
}
