//! `cinema library add DIR`: ingest a folder of films with a progress bar and
//! a summary, into the catalog clip-selector serves (same configuration:
//! `CINEMA_INDEX_DIR`, `CINEMA_CLIP_SELECTOR_*`, `--set key=value`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use library::Library;
use library::ingest::Progress;
use wire::v1::{IngestSummary, ReloadRequest};

#[derive(clap::Args)]
pub struct AddArgs {
    /// The folder of films (with `.srt`/`.vtt` sidecars or embedded subtitles).
    pub dir: PathBuf,
    #[command(flatten)]
    pub common: plumbing::CommonArgs,
}

/// What `cinema library add` reads: the library's settings under
/// clip-selector's names (`CINEMA_CLIP_SELECTOR_PAD_S`, `CINEMA_INDEX_DIR`),
/// so both make and read the same catalog, and where to tell a running
/// clip-selector.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Config {
    nats_url: String,
    #[serde(flatten)]
    catalog: library::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            catalog: library::Config::default(),
        }
    }
}

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_CLIP_SELECTOR_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = library::Config::SEED_ENV;
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
    fn validate(&self) -> Result<(), String> {
        self.catalog.validate()
    }
}

/// A progress bar over the films that need work; problems printed above it.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn begin(&self, _total: usize, todo: usize) {
        self.0.set_length(todo as u64);
        self.0.set_position(0);
    }
    fn film(&self, rel: &str) {
        self.0.set_message(rel.to_string());
    }
    fn done(&self, rel: &str, problem: Option<&str>) {
        if let Some(p) = problem {
            self.0.println(format!("  {rel}: {p}"));
        }
        self.0.inc(1);
    }
}

pub fn add(args: AddArgs) -> anyhow::Result<()> {
    let mut config: Config = plumbing::config::load(&args.common)?;
    config.catalog.library = args.dir.clone();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} films · {elapsed} · {msg}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let index = config.catalog.index();
    let lib = Library::ingest(
        &config.catalog.library,
        &index,
        &config.catalog.ingest_options(),
        &Bar(bar.clone()),
        "",
    )
    .with_context(|| format!("ingesting {}", config.catalog.library.display()))?;
    bar.finish_and_clear();
    let s = lib.summary();
    let (catalog, thumbs) = index.size_on_disk();
    println!(
        "{} films in {}: {} added, {} updated, {} unchanged, {} removed, {} not playable.",
        s.films,
        lib.root().display(),
        s.added,
        s.updated,
        s.unchanged,
        s.removed,
        s.failed
    );
    println!(
        "{} dialogue clips, {} scene clips, {} thumbnails; catalog {} KiB, thumbnails {} KiB in {}; {:.1} s.",
        s.dialogue_clips,
        s.scene_clips,
        s.thumbnails,
        catalog / 1024,
        thumbs / 1024,
        index.root.display(),
        s.seconds
    );
    if !s.problems.is_empty() {
        println!("Problems:");
        for p in &s.problems {
            println!("  {p}");
        }
    }
    match tell_running_selector(&config.nats_url) {
        Ok(s) => println!(
            "The running clip-selector reloaded: {} films, {} dialogue and {} scene clips.",
            s.films - s.failed,
            s.dialogue_clips,
            s.scene_clips
        ),
        Err(why) => println!(
            "No running clip-selector was told ({why}); it reads the catalog when it starts."
        ),
    }
    Ok(())
}

/// Asks a running clip-selector (if NATS answers within a few seconds) to
/// ingest again, which now finds the catalog up to date and serves it.
fn tell_running_selector(nats_url: &str) -> Result<IngestSummary, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let answer = runtime.block_on(async {
        // One try, no retries: nobody may be running.
        let client = bus::connect_options("cinema library add", nats_url)
            .await
            .map_err(|e| e.to_string())?
            .connection_timeout(Duration::from_secs(2))
            .connect(bus::server_addrs(nats_url).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| format!("NATS at {}: {e}", plumbing::redact(nats_url)))?;
        let bus = bus::Bus::new(client);
        bus.request_with_timeout(
            &bus::endpoints::clips::RELOAD,
            &ReloadRequest {},
            Duration::from_secs(600),
        )
        .await
        .map_err(|e| e.to_string())
    });
    // A connection still retrying in the background is not waited for.
    runtime.shutdown_background();
    answer
}
