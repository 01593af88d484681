//! The library as served: the catalog's films and clips in memory, and a
//! lexical (BM25, tantivy) index over captions and cues. Ingest (reading
//! films into the catalog) lives in [`crate::ingest`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, STORED, STRING, Schema, TEXT, Value};
use tantivy::{Index, IndexReader, TantivyDocument, doc};
use wire::v1::{CatalogFilm, Clip, Film, IngestSummary, SearchMode, SearchRequest};

use crate::ingest::{self, Progress};
pub use crate::ingest::{CutOptions, IndexDir, IngestOptions, VIDEO_EXTENSIONS, cut_clips};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ingest(#[from] ingest::Error),
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
}

/// A film of the library and where its file is (never sent on the wire).
#[derive(Debug, Clone)]
pub struct FilmEntry {
    pub film: Film,
    pub path: PathBuf,
}

struct Fields {
    id: Field,
    caption: Field,
    cue: Field,
}

pub struct Library {
    root: PathBuf,
    thumbs: Option<PathBuf>,
    films: Vec<FilmEntry>,
    clips: Vec<Clip>,
    by_id: HashMap<String, usize>,
    film_by_id: HashMap<String, usize>,
    reader: IndexReader,
    index: Index,
    fields: Fields,
    summary: IngestSummary,
}

impl Library {
    /// Ingests `root` (catalog in `root/.cinema-index`, default settings but
    /// `cut`) and loads it.
    pub fn open(root: &Path, cut: CutOptions) -> Result<Library, Error> {
        let opt = IngestOptions {
            cut,
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
        let (catalog, summary) = ingest::ingest(root, index, opt, progress)?;
        let root = root.canonicalize().map_err(|source| ingest::Error::Io {
            path: root.to_path_buf(),
            source,
        })?;
        Self::from_catalog(root, index, catalog, summary, media_base)
    }

    /// The library of a catalog: films that could be read, with their clips.
    pub fn from_catalog(
        root: PathBuf,
        index: &IndexDir,
        catalog: Vec<CatalogFilm>,
        summary: IngestSummary,
        media_base: &str,
    ) -> Result<Library, Error> {
        let mut films = Vec::new();
        let mut clips = Vec::new();
        for entry in catalog {
            let Some(film) = entry.film else { continue };
            if !entry.error.is_empty() {
                continue;
            }
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
        let mut lib = Self::build(root, films, clips)?;
        lib.thumbs = Some(index.thumbs());
        lib.summary = summary;
        Ok(lib)
    }

    /// A library of given films and clips, without a catalog (benchmarks).
    pub fn from_clips(
        root: PathBuf,
        films: Vec<FilmEntry>,
        clips: Vec<Clip>,
    ) -> Result<Library, Error> {
        Self::build(root, films, clips)
    }

    fn build(root: PathBuf, films: Vec<FilmEntry>, clips: Vec<Clip>) -> Result<Library, Error> {
        let mut schema = Schema::builder();
        let id = schema.add_text_field("id", STRING | STORED);
        let caption = schema.add_text_field("caption", TEXT);
        let cue = schema.add_text_field("cue", TEXT);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 50_000_000)?;
        for c in &clips {
            writer.add_document(
                doc!(id => c.id.clone(), caption => c.caption.clone(), cue => c.cue.clone()),
            )?;
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
            thumbs: None,
            summary: IngestSummary::default(),
            films,
            clips,
            by_id,
            film_by_id,
            reader,
            index,
            fields: Fields { id, caption, cue },
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

    /// Lexical search. *Description* matches captions; *answer* matches cues
    /// (the line before a clip), so the hit is the line that followed.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<(Clip, f32)>, Error> {
        let limit = (req.limit as usize).clamp(1, 100);
        let field = match SearchMode::try_from(req.mode).unwrap_or(SearchMode::Description) {
            SearchMode::Answer => self.fields.cue,
            _ => self.fields.caption,
        };
        let parser = QueryParser::for_index(&self.index, vec![field]);
        let (query, _errors) = parser.parse_query_lenient(&req.query);
        let searcher = self.reader.searcher();
        let want = limit + req.exclude_ids.len() + 50;
        let top = searcher.search(&query, &TopDocs::with_limit(want))?;
        let mut out = Vec::new();
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let Some(id) = doc.get_first(self.fields.id).and_then(|v| v.as_str()) else {
                continue;
            };
            let Some(clip) = self.clip(id) else { continue };
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
