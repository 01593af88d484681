//! A library's settings as an operator writes them (flat keys, shared by
//! clip-selector's configuration, where they are flattened in, and by
//! `cinema library add`), and what they mean to ingest.

use std::path::PathBuf;

use encoder::SimdCap;
use serde::{Deserialize, Serialize};

use crate::ingest::{CutOptions, IndexDir, IngestOptions};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Library root: a folder of films with `.srt` sidecars (`CINEMA_LIBRARY`).
    pub library: PathBuf,
    /// Where the catalog and thumbnails are kept; empty means
    /// `{library}/.cinema-index` (`CINEMA_INDEX_DIR`).
    pub index_dir: PathBuf,
    /// Padding on each side of a line, never past the neighbours' words.
    pub pad_s: f64,
    /// Minimum dialogue clip length.
    pub min_clip_s: f64,
    /// Cut scene clips from the picture (ffmpeg scene detection).
    pub scenes: bool,
    pub scene_threshold: f64,
    pub min_scene_s: f64,
    pub max_scene_s: f64,
    /// A JPEG per clip for the dashboard.
    pub thumbnails: bool,
    pub thumbnail_width: u32,
    /// ffmpeg processes run at once while ingesting.
    pub ingest_workers: usize,
    /// The sentence-embedding model folder (`CINEMA_EMBEDDING_MODEL`;
    /// `scripts/setup` fetches it). Unset or unusable: lexical search only.
    pub embedding_model: Option<PathBuf>,
    /// The widest instruction set the sentence encoder and the vector scan
    /// may use (`CINEMA_ENCODER_SIMD`: `avx512`, `avx2`, `portable`; default
    /// the best this CPU has).
    pub encoder_simd: SimdCap,
}

impl Config {
    /// Environment variables that set these keys whatever the service's
    /// prefix, as the README documents them.
    pub const SEED_ENV: &'static [(&'static str, &'static str)] = &[
        ("CINEMA_LIBRARY", "library"),
        ("CINEMA_INDEX_DIR", "index_dir"),
        ("CINEMA_EMBEDDING_MODEL", "embedding_model"),
        ("CINEMA_ENCODER_SIMD", "encoder_simd"),
    ];

    /// Where the catalog lives.
    pub fn index(&self) -> IndexDir {
        if self.index_dir.as_os_str().is_empty() {
            IndexDir::inside(&self.library)
        } else {
            IndexDir {
                root: self.index_dir.clone(),
            }
        }
    }

    pub fn ingest_options(&self) -> IngestOptions {
        IngestOptions {
            cut: CutOptions {
                pad_s: self.pad_s,
                min_len_s: self.min_clip_s,
            },
            scenes: self.scenes,
            scene_threshold: self.scene_threshold,
            min_scene_s: self.min_scene_s,
            max_scene_s: self.max_scene_s,
            thumbnails: self.thumbnails,
            thumbnail_width: self.thumbnail_width,
            workers: self.ingest_workers,
            embedding_model: self
                .embedding_model
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            simd: self.encoder_simd,
        }
    }

    /// What is wrong with these settings, said so an operator can fix it.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=5.0).contains(&self.pad_s) {
            return Err(format!(
                "pad_s must be between 0 and 5 seconds, got {}",
                self.pad_s
            ));
        }
        if !(0.01..=1.0).contains(&self.scene_threshold) {
            return Err(format!(
                "scene_threshold must be between 0.01 and 1, got {}",
                self.scene_threshold
            ));
        }
        if !(self.min_scene_s >= 0.0 && self.max_scene_s >= 1.0) {
            return Err(format!(
                "scenes need min_scene_s >= 0 and max_scene_s >= 1, got {} and {}",
                self.min_scene_s, self.max_scene_s
            ));
        }
        if !(16..=1920).contains(&self.thumbnail_width) {
            return Err(format!(
                "thumbnail_width must be between 16 and 1920 pixels, got {}",
                self.thumbnail_width
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        let ingest = IngestOptions::default();
        Config {
            library: PathBuf::from("library"),
            index_dir: PathBuf::new(),
            pad_s: ingest.cut.pad_s,
            min_clip_s: ingest.cut.min_len_s,
            scenes: ingest.scenes,
            scene_threshold: ingest.scene_threshold,
            min_scene_s: ingest.min_scene_s,
            max_scene_s: ingest.max_scene_s,
            thumbnails: ingest.thumbnails,
            thumbnail_width: ingest.thumbnail_width,
            ingest_workers: ingest.workers,
            embedding_model: ingest.embedding_model,
            encoder_simd: ingest.simd,
        }
    }
}
