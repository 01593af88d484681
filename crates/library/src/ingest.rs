//! Ingest: a folder of films becomes a catalog of clips, one file per film in
//! the index folder, so a re-run redoes only what changed.
//!
//! Per film: its subtitles (a `.srt`/`.vtt` sidecar, else a text stream in
//! the container), one dialogue clip per line, scene clips from ffmpeg's
//! scene-change detection, keyframe-aligned starts, and a thumbnail per clip.
//! A film that cannot be read is recorded with the reason and skipped; it is
//! tried again when its file changes. Ingest never aborts the library for one
//! film.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use prost::Message;
use sha2::{Digest, Sha256};
use wire::v1::{CatalogFilm, Clip, ClipKind, Film, IngestSummary};

use crate::media;
use crate::subtitles::{self, Cue, Format};

/// The catalog layout; entries of another version are re-ingested.
pub const CATALOG_VERSION: u32 = 1;

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
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How dialogue clips are cut around their subtitle lines.
#[derive(Debug, Clone, Copy, PartialEq)]
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

/// Everything ingest can be asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOptions {
    pub cut: CutOptions,
    /// Cut scene clips from the picture.
    pub scenes: bool,
    /// ffmpeg scene-change score (0–1) that counts as a cut.
    pub scene_threshold: f64,
    /// Shorter scenes are merged into the one before.
    pub min_scene_s: f64,
    /// Longer scenes are cut in parts of at most this length.
    pub max_scene_s: f64,
    /// A JPEG per clip, for the dashboard.
    pub thumbnails: bool,
    pub thumbnail_width: u32,
    /// Thumbnails made at once (each is an ffmpeg process).
    pub workers: usize,
    /// The sentence-embedding model folder; `None`: lexical search only.
    pub embedding_model: Option<PathBuf>,
    /// The widest instruction set the encoder and the vector scan may use.
    pub simd: encoder::SimdCap,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            cut: CutOptions::default(),
            scenes: true,
            scene_threshold: 0.3,
            min_scene_s: 1.5,
            max_scene_s: 12.0,
            thumbnails: true,
            thumbnail_width: 256,
            workers: 2,
            embedding_model: None,
            simd: encoder::SimdCap::Best,
        }
    }
}

impl IngestOptions {
    /// The settings clips depend on; a catalog entry made with others is
    /// re-cut. (Thumbnail size is not among them: thumbnails are kept by id.)
    pub(crate) fn settings(&self) -> String {
        format!(
            "pad={};min={};scenes={};thr={};minscene={};maxscene={};thumbs={}",
            self.cut.pad_s,
            self.cut.min_len_s,
            self.scenes,
            self.scene_threshold,
            self.min_scene_s,
            self.max_scene_s,
            self.thumbnails
        )
    }
}

/// Where a library's catalog lives: `films/` (one protobuf file per film)
/// and `thumbs/` (JPEGs named by clip id).
#[derive(Debug, Clone)]
pub struct IndexDir {
    pub root: PathBuf,
}

impl IndexDir {
    /// The default place: `.cinema-index` inside the library (a hidden folder,
    /// never scanned for films).
    pub fn inside(library: &Path) -> IndexDir {
        IndexDir {
            root: library.join(".cinema-index"),
        }
    }

    pub fn films(&self) -> PathBuf {
        self.root.join("films")
    }

    pub fn thumbs(&self) -> PathBuf {
        self.root.join("thumbs")
    }

    fn entry(&self, film_id: &str) -> PathBuf {
        self.films().join(format!("{film_id}.pb"))
    }

    /// Every readable catalog entry; unreadable ones are removed (their film
    /// is ingested again).
    pub fn load(&self) -> Vec<CatalogFilm> {
        let Ok(dir) = std::fs::read_dir(self.films()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in dir.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("pb") {
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|b| CatalogFilm::decode(b.as_slice()).ok())
            {
                Some(entry) => out.push(entry),
                None => {
                    tracing::warn!(entry = %path.display(), "An unreadable catalog entry was removed; its film is ingested again.");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        out.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
        out
    }

    pub(crate) fn save(&self, entry: &CatalogFilm) -> Result<(), Error> {
        let id = entry.film.as_ref().map(|f| f.id.as_str()).unwrap_or("");
        let path = self.entry(id);
        let tmp = path.with_extension("pb.part");
        std::fs::write(&tmp, entry.encode_to_vec()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    fn remove(&self, entry: &CatalogFilm, keep_thumbs: &HashSet<String>) {
        if let Some(f) = &entry.film {
            let _ = std::fs::remove_file(self.entry(&f.id));
        }
        for c in &entry.clips {
            if !c.thumbnail.is_empty() && !keep_thumbs.contains(&c.thumbnail) {
                let _ = std::fs::remove_file(self.thumbs().join(&c.thumbnail));
            }
        }
    }

    /// Bytes on disk: catalog entries and thumbnails.
    pub fn size_on_disk(&self) -> (u64, u64) {
        let sum = |dir: PathBuf| {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0)
        };
        (sum(self.films()), sum(self.thumbs()))
    }
}

/// Reports progress of a long ingest (a progress bar, log lines).
pub trait Progress: Sync {
    /// `total` films were found; `todo` of them need work.
    fn begin(&self, _total: usize, _todo: usize) {}
    /// Work on a film starts.
    fn film(&self, _rel: &str) {}
    /// Work on a film ended (`problem` when it was skipped or repaired).
    /// Films that cannot be played are counted in the summary's `failed`.
    fn done(&self, _rel: &str, _problem: Option<&str>) {}
}

/// Progress as log lines.
pub struct LogProgress;

impl Progress for LogProgress {
    fn begin(&self, total: usize, todo: usize) {
        if todo > 0 {
            tracing::info!(films = total, to_ingest = todo, "Ingesting the library.");
        }
    }
    fn done(&self, rel: &str, problem: Option<&str>) {
        match problem {
            None => tracing::info!(film = rel, "Film ingested."),
            Some(p) => tracing::warn!(film = rel, problem = p, "Film ingested with a problem."),
        }
    }
}

/// The ingest under way, for whoever asks while it runs (the films
/// request, readiness): films done of those that need work, and whether a
/// library has been loaded since start. Also logs as [`LogProgress`].
#[derive(Debug, Default)]
pub struct Tally {
    loaded: std::sync::atomic::AtomicBool,
    done: std::sync::atomic::AtomicU32,
    todo: std::sync::atomic::AtomicU32,
}

impl Tally {
    /// A library is served (the first ingest since start ended).
    pub fn set_loaded(&self) {
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// (films done, films that need work) of the ingest that runs or ran last.
    pub fn counts(&self) -> (u32, u32) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.done.load(Relaxed), self.todo.load(Relaxed))
    }
}

impl Progress for Tally {
    fn begin(&self, total: usize, todo: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.done.store(0, Relaxed);
        self.todo
            .store(u32::try_from(todo).unwrap_or(u32::MAX), Relaxed);
        LogProgress.begin(total, todo);
    }
    fn done(&self, rel: &str, problem: Option<&str>) {
        self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        LogProgress.done(rel, problem);
    }
}

/// A short stable id: `prefix` + 12 hex digits of SHA-256 over `parts`.
pub fn stable_id(prefix: &str, parts: &[&str]) -> String {
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
    cues: &[Cue],
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
            not_speech: String::new(),
        });
    }
    clips
}

/// The most scene parts one film is cut into by length alone: a film
/// longer than `MAX_SCENE_PARTS × max_s` gets longer parts, so a header
/// claiming an absurd length never makes an absurd number of clips.
pub const MAX_SCENE_PARTS: usize = 2000;

/// Scenes between cuts: `[0, c1), [c1, c2) … [cn, duration)`; scenes shorter
/// than `min_s` join the one before, longer ones are cut in parts of at
/// most `max_s` (or longer, see [`MAX_SCENE_PARTS`]).
pub fn scenes(cuts: &[f64], duration_s: f64, min_s: f64, max_s: f64) -> Vec<(f64, f64)> {
    if !(duration_s.is_finite() && duration_s > 0.0) {
        return Vec::new();
    }
    let mut bounds = vec![0.0];
    for &c in cuts {
        if c > 0.0 && c < duration_s {
            bounds.push(c);
        }
    }
    bounds.push(duration_s);
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for w in bounds.windows(2) {
        let (a, b) = (w[0], w[1]);
        match merged.last_mut() {
            Some(last) if b - a < min_s || last.1 - last.0 < min_s => last.1 = b,
            _ => merged.push((a, b)),
        }
    }
    let max_s = max_s
        .max(min_s)
        .max(0.5)
        .max(duration_s / MAX_SCENE_PARTS as f64);
    let mut out = Vec::new();
    for (a, b) in merged {
        let parts = ((b - a) / max_s).ceil().max(1.0) as usize;
        let step = (b - a) / parts as f64;
        for k in 0..parts {
            out.push((a + step * k as f64, a + step * (k + 1) as f64));
        }
    }
    out.retain(|(a, b)| b - a > 0.04);
    out
}

/// The lines spoken during `[a, b)`, joined: a scene's caption.
fn lines_during(cues: &[Cue], a: f64, b: f64) -> String {
    let text: Vec<&str> = cues
        .iter()
        .filter(|c| c.start_s < b && c.end_s > a)
        .map(|c| c.text.as_str())
        .collect();
    let joined = text.join(" ");
    if joined.chars().count() > 400 {
        joined.chars().take(400).collect::<String>() + "…"
    } else {
        joined
    }
}

pub fn title_of(stem: &str) -> String {
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

/// Video files under `dir`, skipping hidden folders (the index among them)
/// and `skip`. Links are followed; what cannot be read (a folder without
/// permission, a link loop, a dangling link) and what is not a plain file
/// (a FIFO or a device named like a film, which would block whoever opens
/// it) is told in `problems` and passed over: one bad entry never ends the
/// walk.
pub fn find_videos(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<String>) {
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !e.file_name().to_string_lossy().starts_with('.') && e.path() != skip);
    for entry in walk {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let at = e
                    .path()
                    .map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string())
                    .unwrap_or_default();
                let why = if e.loop_ancestor().is_some() {
                    "a link loop; not followed".to_string()
                } else {
                    e.io_error()
                        .map_or_else(|| e.to_string(), |io| io.to_string())
                };
                problems.push(format!("{at}: cannot be read ({why})"));
                continue;
            }
        };
        let path = entry.path();
        let is_video = path
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| VIDEO_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()));
        if !is_video || entry.file_type().is_dir() {
            continue;
        }
        if entry.file_type().is_file() {
            out.push(path.to_path_buf());
        } else {
            let rel = path.strip_prefix(dir).unwrap_or(path).display();
            problems.push(format!(
                "{rel}: not a plain file (a pipe or a device); skipped"
            ));
        }
    }
}

/// Size and modification time (ns since the epoch) of a file.
fn stat(path: &Path) -> Option<(u64, i64)> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    Some((m.len(), mtime))
}

fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A film's sidecar subtitles: `name.srt`, `name.vtt`, `name.en.srt`, `name.en.vtt`.
fn sidecar(video: &Path) -> Option<(PathBuf, Format)> {
    let stem = video.file_stem()?.to_string_lossy().to_string();
    let dir = video.parent()?;
    [
        ("srt", Format::Srt),
        ("vtt", Format::Vtt),
        ("en.srt", Format::Srt),
        ("en.vtt", Format::Vtt),
    ]
    .into_iter()
    .map(|(ext, f)| (dir.join(format!("{stem}.{ext}")), f))
    .find(|(p, _)| p.is_file())
}

struct Found {
    path: PathBuf,
    rel: String,
    size: u64,
    mtime_ns: i64,
    subtitle: Option<(PathBuf, Format, u64, i64)>,
}

impl Found {
    fn subtitle_rel(&self, root: &Path) -> String {
        self.subtitle
            .as_ref()
            .map(|(p, ..)| {
                p.strip_prefix(root)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .to_string()
            })
            .unwrap_or_default()
    }

    /// The entry stays valid when nothing it was made from changed.
    fn same_inputs(&self, e: &CatalogFilm, root: &Path, settings: &str) -> bool {
        let (ssize, smtime) = self.subtitle.as_ref().map_or((0, 0), |s| (s.2, s.3));
        e.version == CATALOG_VERSION
            && e.settings == settings
            && e.size == self.size
            && e.subtitle_path == self.subtitle_rel(root)
            && e.subtitle_size == ssize
            && e.subtitle_mtime_ns == smtime
    }
}

/// Ingests `root` into `index`: new and changed films are read, unchanged
/// ones kept, deleted ones removed. Returns the catalog and a summary.
pub fn ingest(
    root: &Path,
    index: &IndexDir,
    opt: &IngestOptions,
    progress: &dyn Progress,
) -> Result<(Vec<CatalogFilm>, IngestSummary), Error> {
    let t0 = Instant::now();
    if !root.is_dir() {
        return Err(Error::MissingRoot(root.to_path_buf()));
    }
    let root = root.canonicalize().map_err(io(root))?;
    for d in [index.films(), index.thumbs()] {
        std::fs::create_dir_all(&d).map_err(io(&d))?;
    }
    let index_root = index.root.canonicalize().unwrap_or(index.root.clone());
    let mut videos = Vec::new();
    let mut walk_problems = Vec::new();
    find_videos(&root, &index_root, &mut videos, &mut walk_problems);
    videos.sort();
    let found: Vec<Found> = videos
        .into_iter()
        .filter_map(|path| {
            let (size, mtime_ns) = stat(&path)?;
            let rel = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .to_string_lossy()
                .to_string();
            let subtitle = sidecar(&path).and_then(|(p, f)| {
                let (s, m) = stat(&p)?;
                Some((p, f, s, m))
            });
            Some(Found {
                path,
                rel,
                size,
                mtime_ns,
                subtitle,
            })
        })
        .collect();

    let settings = opt.settings();
    let mut old: HashMap<String, CatalogFilm> = index
        .load()
        .into_iter()
        .map(|e| (e.rel_path.clone(), e))
        .collect();
    let mut summary = IngestSummary {
        films: found.len() as u32,
        problems: walk_problems,
        ..Default::default()
    };
    // First the films that need no work, so the progress bar counts the rest.
    let mut catalog = Vec::new();
    let mut todo = Vec::new();
    for f in found {
        match old.remove(&f.rel) {
            Some(e) if f.same_inputs(&e, &root, &settings) && e.mtime_ns == f.mtime_ns => {
                catalog.push(e);
                summary.unchanged += 1;
            }
            Some(mut e) if f.same_inputs(&e, &root, &settings) => {
                // Touched, maybe not changed: the content decides.
                if sha256_file(&f.path).ok().as_deref() == Some(e.sha256.as_str()) {
                    e.mtime_ns = f.mtime_ns;
                    index.save(&e)?;
                    catalog.push(e);
                    summary.unchanged += 1;
                } else {
                    todo.push((f, Some(e)));
                }
            }
            previous => todo.push((f, previous)),
        }
    }
    progress.begin(summary.films as usize, todo.len());
    for (f, previous) in todo {
        progress.film(&f.rel);
        let entry = ingest_film(&root, index, &f, opt, &settings);
        let problem = (!entry.error.is_empty())
            .then(|| entry.error.clone())
            .or_else(|| (!entry.notes.is_empty()).then(|| entry.notes.join("; ")));
        if let Some(p) = problem.as_ref().filter(|_| entry.error.is_empty()) {
            summary.problems.push(format!("{}: {p}", f.rel));
        }
        if previous.is_some() {
            summary.updated += 1;
        } else {
            summary.added += 1;
        }
        if let Some(prev) = previous {
            let keep: HashSet<String> = entry.clips.iter().map(|c| c.thumbnail.clone()).collect();
            let same_id = prev.film.as_ref().map(|x| &x.id) == entry.film.as_ref().map(|x| &x.id);
            if same_id {
                // The new entry overwrites the file; only stale thumbnails go.
                for c in &prev.clips {
                    if !c.thumbnail.is_empty() && !keep.contains(&c.thumbnail) {
                        let _ = std::fs::remove_file(index.thumbs().join(&c.thumbnail));
                    }
                }
            } else {
                index.remove(&prev, &keep);
            }
        }
        index.save(&entry)?;
        progress.done(&f.rel, problem.as_deref());
        catalog.push(entry);
    }
    // Films whose files are gone.
    for (_, gone) in old {
        index.remove(&gone, &HashSet::new());
        summary.removed += 1;
    }
    catalog.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    for e in &catalog {
        // A film that cannot be played stays reported until its file changes.
        if !e.error.is_empty() {
            summary.failed += 1;
            summary
                .problems
                .push(format!("{}: {}", e.rel_path, e.error));
        }
        for c in &e.clips {
            match ClipKind::try_from(c.kind) {
                Ok(ClipKind::Scene) => summary.scene_clips += 1,
                _ => summary.dialogue_clips += 1,
            }
            summary.thumbnails += u32::from(!c.thumbnail.is_empty());
        }
    }
    summary.seconds = t0.elapsed().as_secs_f64();
    summary.finished_at_ms = wire::now_ms();
    Ok((catalog, summary))
}

/// Reads one film. Never fails: what went wrong is in `error` (nothing
/// playable) or `notes` (repaired, or partly indexed).
fn ingest_film(
    root: &Path,
    index: &IndexDir,
    f: &Found,
    opt: &IngestOptions,
    settings: &str,
) -> CatalogFilm {
    let film_id = stable_id("f", &[&f.rel]);
    let stem = f
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let title = title_of(&stem);
    let (subtitle_size, subtitle_mtime_ns) = f.subtitle.as_ref().map_or((0, 0), |s| (s.2, s.3));
    let mut entry = CatalogFilm {
        version: CATALOG_VERSION,
        rel_path: f.rel.clone(),
        size: f.size,
        mtime_ns: f.mtime_ns,
        subtitle_path: f.subtitle_rel(root),
        subtitle_size,
        subtitle_mtime_ns,
        settings: settings.to_string(),
        film: Some(Film {
            id: film_id.clone(),
            title: title.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    match sha256_file(&f.path) {
        Ok(h) => entry.sha256 = h,
        Err(e) => {
            entry.error = e.to_string();
            return entry;
        }
    }
    let probe = match media::probe(&f.path) {
        Ok(p) => p,
        Err(e) => {
            entry.error = format!("not playable: {e}");
            return entry;
        }
    };

    // The lines: sidecar first, then a text stream inside the film.
    let mut source = "";
    let mut cues = Vec::new();
    if let Some((path, format, ..)) = &f.subtitle {
        match std::fs::read(path) {
            Ok(bytes) => {
                let (c, report) = subtitles::read(&bytes, Some(*format));
                note_report(&mut entry.notes, &report);
                cues = c;
                source = if *format == Format::Vtt { "vtt" } else { "srt" };
            }
            Err(e) => entry.notes.push(format!("subtitles unreadable: {e}")),
        }
    } else if let Some(stream) = media::pick_subtitles(&probe.subtitles) {
        match media::extract_subtitles(&f.path, stream, media::whole_film(probe.duration_s)) {
            Ok(bytes) => {
                let (c, report) = subtitles::read(&bytes, Some(Format::Srt));
                note_report(&mut entry.notes, &report);
                cues = c;
                source = "embedded";
            }
            Err(e) => entry
                .notes
                .push(format!("embedded subtitles unreadable: {e}")),
        }
    } else if !probe.subtitles.is_empty() {
        let codecs: Vec<&str> = probe.subtitles.iter().map(|s| s.codec.as_str()).collect();
        entry.notes.push(format!(
            "only picture subtitles ({}); indexed by scenes",
            codecs.join(", ")
        ));
    }
    // Lines past the end of the film cannot be played.
    let before = cues.len();
    cues.retain(|c| c.start_s < probe.duration_s);
    for c in &mut cues {
        c.end_s = c.end_s.min(probe.duration_s);
    }
    if cues.len() < before {
        entry.notes.push(format!(
            "{} lines after the end of the film dropped",
            before - cues.len()
        ));
    }
    if cues.is_empty() && source.is_empty() && probe.subtitles.is_empty() {
        entry.notes.push("no subtitles; indexed by scenes".into());
    }

    let mut clips = cut_clips(&film_id, &title, &f.rel, &cues, opt.cut);
    for c in &mut clips {
        c.end_s = c.end_s.min(probe.duration_s);
    }
    let mut scene_count = 0;
    if probe.has_video {
        // Unknown keyframes leave every start as it is.
        let keys =
            media::keyframes(&f.path, media::whole_film(probe.duration_s)).unwrap_or_else(|e| {
                entry.notes.push(format!("keyframes unknown: {e}"));
                Vec::new()
            });
        for c in &mut clips {
            c.keyframe_start_s = media::keyframe_at_or_before(&keys, c.start_s);
        }
        if opt.scenes {
            match media::scene_cuts(
                &f.path,
                opt.scene_threshold,
                media::whole_film(probe.duration_s),
            ) {
                Ok(cuts) => {
                    for (k, (a, b)) in
                        scenes(&cuts, probe.duration_s, opt.min_scene_s, opt.max_scene_s)
                            .into_iter()
                            .enumerate()
                    {
                        let ms = |t: f64| ((t * 1000.0).round() as i64).to_string();
                        clips.push(Clip {
                            id: stable_id("s", &[&f.rel, &ms(a), &ms(b)]),
                            film_id: film_id.clone(),
                            film_title: title.clone(),
                            start_s: a,
                            end_s: b,
                            caption: lines_during(&cues, a, b),
                            cue: String::new(),
                            next_line: String::new(),
                            kind: ClipKind::Scene as i32,
                            line_index: k as u32,
                            thumbnail: String::new(),
                            keyframe_start_s: media::keyframe_at_or_before(&keys, a),
                            duration_s: b - a,
                            not_speech: String::new(),
                        });
                        scene_count += 1;
                    }
                }
                Err(e) => entry.notes.push(format!("scenes unknown: {e}")),
            }
        }
        if opt.thumbnails {
            make_thumbnails(&f.path, index, &mut clips, opt, &mut entry.notes);
        }
    }
    entry.film = Some(Film {
        id: film_id,
        title,
        duration_s: probe.duration_s,
        clip_count: clips.len() as u32,
        scene_count,
        subtitles: source.to_string(),
    });
    entry.clips = clips;
    entry
}

fn note_report(notes: &mut Vec<String>, r: &subtitles::Report) {
    if let Some(enc) = r.encoding {
        notes.push(format!("subtitles read as {enc}"));
    }
    if r.skipped > 0 {
        notes.push(format!(
            "{} unreadable or empty subtitle blocks skipped",
            r.skipped
        ));
    }
    if r.overlaps_repaired > 0 {
        notes.push(format!(
            "{} overlapping lines shortened",
            r.overlaps_repaired
        ));
    }
}

/// A JPEG per clip, from the middle of the clip (the picture while its line
/// is spoken), `workers` ffmpeg processes at a time. Clip ids are stable, so
/// a thumbnail already there is kept.
fn make_thumbnails(
    film: &Path,
    index: &IndexDir,
    clips: &mut [Clip],
    opt: &IngestOptions,
    notes: &mut Vec<String>,
) {
    let workers = opt.workers.clamp(1, 16);
    let chunk = clips.len().div_ceil(workers).max(1);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = clips
            .chunks_mut(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut failed = Vec::new();
                    for c in part.iter_mut() {
                        let name = format!("{}.jpg", c.id);
                        let out = index.thumbs().join(&name);
                        let at = (c.start_s + c.end_s) / 2.0;
                        if out.is_file()
                            || media::thumbnail(film, at, opt.thumbnail_width, &out).is_ok()
                        {
                            c.thumbnail = name;
                        } else {
                            failed.push(c.id.clone());
                        }
                    }
                    failed
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    if !failures.is_empty() {
        notes.push(format!("{} thumbnails could not be made", failures.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(a: f64, b: f64, t: &str) -> Cue {
        Cue::new(a, b, t)
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
        assert!((clips[1].duration_s - 0.2).abs() < 1e-9);
        // Stable ids.
        let again = cut_clips("f", "F", "f.mp4", &cues, CutOptions::default());
        assert_eq!(clips[2].id, again[2].id);
        assert_ne!(clips[0].id, clips[1].id);
    }

    #[test]
    fn scenes_merge_short_and_split_long_parts() {
        // Cuts at 0.5 (too soon), 4 and 4.8 (a short scene, joins the one
        // before), 10, and a 30 s tail.
        let s = scenes(&[0.5, 4.0, 4.8, 10.0], 40.0, 1.5, 12.0);
        assert_eq!(s[0], (0.0, 4.8));
        assert_eq!(s[1], (4.8, 10.0));
        // 30 s in three parts of 10 s.
        assert_eq!(&s[2..], &[(10.0, 20.0), (20.0, 30.0), (30.0, 40.0)]);
        // No cuts at all: the film in parts.
        assert_eq!(scenes(&[], 5.0, 1.5, 12.0), vec![(0.0, 5.0)]);
        // A header claiming ~3 million years: a bounded number of parts.
        let absurd = scenes(&[3.0, 9.0], 1e14, 1.5, 12.0);
        assert!(absurd.len() <= MAX_SCENE_PARTS + 3, "{}", absurd.len());
        assert!(scenes(&[], f64::INFINITY, 1.5, 12.0).is_empty());
        assert!(scenes(&[], f64::NAN, 1.5, 12.0).is_empty());
        // Cuts outside the film are ignored.
        assert_eq!(scenes(&[-1.0, 9.0], 5.0, 1.5, 12.0), vec![(0.0, 5.0)]);
    }

    #[test]
    fn titles_from_file_names() {
        assert_eq!(title_of("the-last_summer"), "The Last Summer");
    }

    #[test]
    fn scene_captions_are_the_lines_spoken_in_them() {
        let cues = [cue(1.0, 2.0, "Hello."), cue(5.0, 6.0, "Goodbye.")];
        assert_eq!(lines_during(&cues, 0.0, 3.0), "Hello.");
        assert_eq!(lines_during(&cues, 1.5, 5.5), "Hello. Goodbye.");
        assert_eq!(lines_during(&cues, 3.0, 4.0), "");
    }
}
