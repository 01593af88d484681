//! The film library, with no bus: [`ingest`] scans a folder of films, reads
//! their subtitles ([`subtitles`]) and cuts clips ([`media`] runs ffprobe
//! and ffmpeg) into a catalog kept on disk; [`catalog`] serves that catalog
//! in memory and searches it: lexical (tantivy), semantic ([`semantic`]:
//! [`embed`] sentence vectors in a [`vectors`] index) and both fused
//! ([`fusion`]); answers are judged in [`answer`], which reads what kind
//! of line each is ([`lines`]). clip-selector answers over NATS from it; `cinema library`
//! builds one from the command line.

pub mod answer;
pub mod catalog;
pub mod config;
pub mod embed;
pub mod fusion;
pub mod ingest;
pub mod lines;
pub mod media;
pub mod semantic;
pub mod subtitles;
pub mod vectors;

pub use catalog::{Error, FilmEntry, Found, Library};
pub use config::Config;
pub use ingest::{CutOptions, IndexDir, IngestOptions, VIDEO_EXTENSIONS, cut_clips};
