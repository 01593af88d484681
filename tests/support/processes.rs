//! Processes of a test: their environment, a SIGKILL, and a clip-selector
//! serving a library's lines (the benches').

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A variable of a running process's environment.
pub fn process_env(pid: i32, key: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// Sends SIGKILL to one process.
pub fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A clip-selector process, killed when dropped.
pub struct SelectorProcess(pub Child);

impl Drop for SelectorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts clip-selector on `library`'s lines (no scenes, no thumbnails),
/// with the embedding model folder `model` (empty: BM25 only), and waits
/// until its first ingest has finished; returns it with the time from
/// start (the binaries are built first, so the time is the service's).
pub async fn selector_process(
    bus: &bus::Bus,
    nats_url: &str,
    library: &Path,
    model: &str,
) -> (SelectorProcess, Duration) {
    let bin = testkit::bin("clip-selector");
    let t0 = Instant::now();
    let child = Command::new(bin)
        .env("NATS_URL", nats_url)
        .env("CINEMA_LIBRARY", library)
        .env("CINEMA_CLIP_SELECTOR_MEDIA_ADDR", "127.0.0.1:0")
        .env("CINEMA_CLIP_SELECTOR_SCENES", "false")
        .env("CINEMA_CLIP_SELECTOR_THUMBNAILS", "false")
        .env("CINEMA_EMBEDDING_MODEL", model)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let process = SelectorProcess(child);
    testkit::eventually(
        Duration::from_secs(1800),
        "clip-selector to finish its ingest",
        async || {
            let list = bus
                .request(
                    &bus::endpoints::clips::FILMS,
                    &wire::v1::ListFilmsRequest {},
                )
                .await
                .ok()?;
            let ingest = list.ingest?;
            (!ingest.running && ingest.finished_at_ms > 0).then_some(())
        },
    )
    .await;
    (process, t0.elapsed())
}
