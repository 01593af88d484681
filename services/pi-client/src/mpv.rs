//! One long-lived `mpv --idle` driven over its JSON IPC socket.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

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
}

/// What the player reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Playback (re)started after a load or a seek.
    PlaybackRestart,
    /// A file ended: `eof`, `stop`, `quit`, `error` or `redirect`.
    EndFile {
        reason: String,
        error: Option<String>,
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
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(ev) = parse_event(&line)
                    && tx.send(ev).await.is_err()
                {
                    break;
                }
            }
        });
        Ok((
            Mpv {
                child,
                writer,
                _dir: tempfile_dir::Dir(dir),
            },
            rx,
        ))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn command(&mut self, args: Value) -> Result<(), Error> {
        let mut line =
            serde_json::to_vec(&json!({ "command": args })).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.writer.write_all(&line).await?;
        Ok(())
    }

    /// Plays `url` from `start_s` to `end_s`, replacing whatever plays.
    /// mpv 0.35 takes the per-file options as the third argument.
    pub async fn play(&mut self, url: &str, start_s: f64, end_s: f64) -> Result<(), Error> {
        let options = format!("start={start_s:.3},end={end_s:.3}");
        self.command(json!(["loadfile", url, "replace", options]))
            .await
    }

    /// Stops the clip (barge-in); mpv stays, idle.
    pub async fn stop(&mut self) -> Result<(), Error> {
        self.command(json!(["stop"])).await
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

/// Reads one line of mpv's IPC output; replies and unknown events are `None`.
pub fn parse_event(line: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(line).ok()?;
    match v.get("event")?.as_str()? {
        "playback-restart" => Some(Event::PlaybackRestart),
        "end-file" => Some(Event::EndFile {
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
                error: Some("loading failed".into())
            })
        );
        assert_eq!(parse_event(r#"{"request_id":0,"error":"success"}"#), None);
        assert_eq!(parse_event("not json"), None);
    }
}
