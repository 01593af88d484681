//! One long-lived `mpv --idle` driven over its JSON IPC socket.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// How long mpv has to answer a command.
const REPLY_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start mpv ({bin}): {source}; install it with `apt-get install mpv`")]
    Spawn {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mpv did not open its IPC socket within {0:?}")]
    NoSocket(Duration),
    #[error("mpv IPC: {0}")]
    Io(#[from] std::io::Error),
    /// mpv refused the command; its own words.
    #[error("mpv refused {command}: {message}")]
    Refused { command: String, message: String },
    #[error("mpv did not answer {0} within {REPLY_WAIT:?}")]
    NoReply(String),
}

/// Replies awaited, by request id.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// What the player reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A file began loading: its playlist entry (mpv 0.33+ says which).
    StartFile { entry: Option<i64> },
    /// Playback (re)started after a load or a seek (of the file that
    /// started last).
    PlaybackRestart,
    /// A file ended: `eof`, `stop`, `quit`, `error` or `redirect`; its
    /// playlist entry when mpv says.
    EndFile {
        reason: String,
        error: Option<String>,
        entry: Option<i64>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub bin: String,
    /// `--vo`; empty leaves mpv's default (full screen on the Pi).
    pub vo: String,
    /// `--ao`; empty leaves mpv's default.
    pub ao: String,
    pub extra_args: Vec<String>,
}

pub struct Mpv {
    child: Child,
    writer: OwnedWriteHalf,
    pending: Pending,
    next_id: u64,
    /// mpv's version (major, minor), as it reports it.
    version: Option<(u32, u32)>,
    _dir: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A private directory for the IPC socket, removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Mpv {
    /// Starts mpv idle and connects to its socket; events arrive on the
    /// returned receiver until mpv exits.
    pub async fn start(opt: &Options) -> Result<(Mpv, mpsc::Receiver<Event>), Error> {
        let dir = std::env::temp_dir().join(format!(
            "cinema-mpv-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("mpv.sock");
        let mut cmd = Command::new(&opt.bin);
        cmd.args([
            "--idle=yes",
            "--no-terminal",
            "--force-window=no",
            "--keep-open=no",
            "--fs",
            "--osc=no",
        ])
        .arg(format!("--input-ipc-server={}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
        if !opt.vo.is_empty() {
            cmd.arg(format!("--vo={}", opt.vo));
        }
        if !opt.ao.is_empty() {
            cmd.arg(format!("--ao={}", opt.ao));
        }
        cmd.args(&opt.extra_args);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            bin: opt.bin.clone(),
            source,
        })?;
        let limit = Duration::from_secs(10);
        let stream = connect(&socket, limit).await?;
        let (reader, writer) = stream.into_split();
        let (tx, rx) = mpsc::channel(64);
        let pending: Pending = Arc::default();
        let replies = pending.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((id, reply)) = parse_reply(&line) {
                    let waiter = replies.lock().ok().and_then(|mut p| p.remove(&id));
                    if let Some(w) = waiter {
                        let _ = w.send(reply);
                    }
                    continue;
                }
                if let Some(ev) = parse_event(&line)
                    && tx.send(ev).await.is_err()
                {
                    break;
                }
            }
            // mpv is gone: nobody answers the commands still waiting.
            if let Ok(mut p) = replies.lock() {
                p.clear();
            }
        });
        let mut mpv = Mpv {
            child,
            writer,
            pending,
            next_id: 1,
            version: None,
            _dir: tempfile_dir::Dir(dir),
        };
        mpv.version = mpv
            .command(json!(["get_property", "mpv-version"]))
            .await
            .ok()
            .and_then(|v| v.as_str().and_then(parse_version));
        tracing::debug!(version = ?mpv.version, "mpv started.");
        Ok((mpv, rx))
    }

    /// mpv's version (major, minor), when it said.
    pub fn version(&self) -> Option<(u32, u32)> {
        self.version
    }

    /// Overrides the version mpv reported (an mpv that misreports it; the
    /// tests, to take the other `loadfile` form first).
    pub fn set_version(&mut self, version: Option<(u32, u32)>) {
        self.version = version;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends a command and waits for mpv's answer: its data, or the error
    /// mpv gave (a refused command is never taken for done).
    pub async fn command(&mut self, args: Value) -> Result<Value, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let name = args
            .get(0)
            .and_then(Value::as_str)
            .unwrap_or("a command")
            .to_string();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        let mut line = serde_json::to_vec(&json!({ "command": args, "request_id": id }))
            .map_err(std::io::Error::other)?;
        line.push(b'\n');
        if let Err(e) = self.writer.write_all(&line).await {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&id);
            }
            return Err(e.into());
        }
        match tokio::time::timeout(REPLY_WAIT, rx).await {
            Ok(Ok(Ok(data))) => Ok(data),
            Ok(Ok(Err(message))) => Err(Error::Refused {
                command: name,
                message,
            }),
            Ok(Err(_)) | Err(_) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&id);
                }
                Err(Error::NoReply(name))
            }
        }
    }

    /// Plays `url` from `start_s` to `end_s`, replacing whatever plays.
    /// The per-file options are the third argument up to mpv 0.37 and the
    /// fourth from 0.38 (an index comes before them); the form follows the
    /// version mpv reported, and the other is tried if mpv refuses it.
    /// Returns the new file's playlist entry (mpv 0.33+), which its events
    /// name: an event of an earlier file, read late, is then told apart.
    pub async fn play(
        &mut self,
        url: &str,
        start_s: f64,
        end_s: f64,
    ) -> Result<Option<i64>, Error> {
        let options = format!("start={start_s:.3},end={end_s:.3}");
        let forms = loadfile_forms(self.version, url, &options);
        let mut refused = None;
        for form in forms {
            match self.command(form).await {
                Ok(data) => return Ok(data.get("playlist_entry_id").and_then(Value::as_i64)),
                Err(e @ Error::Refused { .. }) => refused = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(refused.unwrap_or_else(|| Error::NoReply("loadfile".into())))
    }

    /// Stops the clip (barge-in); mpv stays, idle.
    pub async fn stop(&mut self) -> Result<(), Error> {
        self.command(json!(["stop"])).await.map(|_| ())
    }

    /// Asks mpv to quit, then kills it if it has not gone within a second.
    pub async fn shutdown(mut self) {
        let _ = self.command(json!(["quit"])).await;
        if tokio::time::timeout(Duration::from_secs(1), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Resolves when mpv exits.
    pub async fn exited(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }
}

async fn connect(socket: &Path, limit: Duration) -> Result<UnixStream, Error> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match UnixStream::connect(socket).await {
            Ok(s) => return Ok(s),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => return Err(Error::NoSocket(limit)),
        }
    }
}

/// The `loadfile` commands to try, in order, for mpv `version`: mpv 0.38
/// put an insertion index before the options.
pub fn loadfile_forms(version: Option<(u32, u32)>, url: &str, options: &str) -> [Value; 2] {
    let old = json!(["loadfile", url, "replace", options]);
    let new = json!(["loadfile", url, "replace", -1, options]);
    match version {
        Some(v) if v < (0, 38) => [old, new],
        _ => [new, old],
    }
}

/// (major, minor) from mpv's `mpv-version`: `mpv 0.35.1`, `mpv v0.40.0`,
/// `mpv v0.38.0-123-gabcdef`.
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.trim().strip_prefix("mpv")?.trim_start();
    let rest = rest.strip_prefix('v').unwrap_or(rest);
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A reply to a command: its request id, and its data or mpv's error.
pub fn parse_reply(line: &str) -> Option<(u64, Result<Value, String>)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let id = v.get("request_id")?.as_u64()?;
    if v.get("event").is_some() {
        return None;
    }
    let reply = match v.get("error").and_then(Value::as_str) {
        Some("success") => Ok(v.get("data").cloned().unwrap_or(Value::Null)),
        Some(e) => Err(e.to_string()),
        None => Err("no error field in the reply".to_string()),
    };
    Some((id, reply))
}

/// Reads one line of mpv's IPC output; replies and unknown events are `None`.
pub fn parse_event(line: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(line).ok()?;
    match v.get("event")?.as_str()? {
        "playback-restart" => Some(Event::PlaybackRestart),
        "start-file" => Some(Event::StartFile {
            entry: v.get("playlist_entry_id").and_then(Value::as_i64),
        }),
        "end-file" => Some(Event::EndFile {
            entry: v.get("playlist_entry_id").and_then(Value::as_i64),
            reason: v
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string(),
            error: v
                .get("file_error")
                .and_then(Value::as_str)
                .map(str::to_string),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events() {
        assert_eq!(
            parse_event(r#"{"event":"playback-restart"}"#),
            Some(Event::PlaybackRestart)
        );
        assert_eq!(
            parse_event(r#"{"event":"end-file","reason":"error","file_error":"loading failed"}"#),
            Some(Event::EndFile {
                reason: "error".into(),
                error: Some("loading failed".into()),
                entry: None,
            })
        );
        assert_eq!(
            parse_event(r#"{"event":"end-file","reason":"eof","playlist_entry_id":3}"#),
            Some(Event::EndFile {
                reason: "eof".into(),
                error: None,
                entry: Some(3),
            })
        );
        assert_eq!(
            parse_event(r#"{"event":"start-file","playlist_entry_id":4}"#),
            Some(Event::StartFile { entry: Some(4) })
        );
        assert_eq!(parse_event(r#"{"request_id":0,"error":"success"}"#), None);
        assert_eq!(parse_event("not json"), None);
    }

    #[test]
    fn parses_replies() {
        assert_eq!(
            parse_reply(r#"{"request_id":3,"error":"success","data":"mpv 0.35.1"}"#),
            Some((3, Ok(json!("mpv 0.35.1"))))
        );
        assert_eq!(
            parse_reply(r#"{"request_id":4,"error":"invalid parameter"}"#),
            Some((4, Err("invalid parameter".into())))
        );
        assert_eq!(parse_reply(r#"{"event":"idle"}"#), None);
        assert_eq!(parse_reply("{"), None);
    }

    #[test]
    fn versions_and_loadfile_forms() {
        for (text, want) in [
            ("mpv 0.35.1", Some((0, 35))),
            ("mpv v0.40.0", Some((0, 40))),
            ("mpv v0.38.0-123-gabcdef", Some((0, 38))),
            ("mpv 0.37", Some((0, 37))),
            ("mplayer 1.0", None),
            ("mpv", None),
        ] {
            assert_eq!(parse_version(text), want, "{text}");
        }
        let old = json!(["loadfile", "u", "replace", "o"]);
        let new = json!(["loadfile", "u", "replace", -1, "o"]);
        assert_eq!(
            loadfile_forms(Some((0, 35)), "u", "o"),
            [old.clone(), new.clone()]
        );
        assert_eq!(
            loadfile_forms(Some((0, 38)), "u", "o"),
            [new.clone(), old.clone()]
        );
        assert_eq!(loadfile_forms(None, "u", "o"), [new, old]);
    }
}
