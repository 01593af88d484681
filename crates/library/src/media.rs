//! What ingest asks of ffprobe and ffmpeg: a film's length and streams, its
//! embedded subtitles, scene cuts, keyframes, and thumbnails. Each call is a
//! child process with a bound on its time (a hostile or damaged file must
//! not hold ingest forever); its failure comes back as an error naming the
//! file and the tool's own last words, never a panic.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use wait_timeout::ChildExt;

/// The longest film ingest believes: a header claiming more is damaged or
/// hostile (scene cutting would make clips of a length that is not there).
pub const MAX_FILM_S: f64 = 24.0 * 3600.0;

/// How long one quick look at a file (its streams, a thumbnail) may take.
pub const QUICK: Duration = Duration::from_secs(60);

/// How long a pass over a whole film (scene detection, keyframes, embedded
/// subtitles) may take: a few times its length, for a slow machine, and at
/// least [`QUICK`].
pub fn whole_film(duration_s: f64) -> Duration {
    let s = (duration_s.clamp(0.0, MAX_FILM_S) * 3.0).max(QUICK.as_secs_f64());
    Duration::from_secs_f64(s)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{tool} is not installed (apt-get install ffmpeg)")]
    Missing { tool: &'static str },
    #[error("{tool} on {path} took longer than {} s; stopped", limit.as_secs())]
    TooSlow {
        tool: &'static str,
        path: PathBuf,
        limit: Duration,
    },
    #[error("{tool} could not read {path}: {detail}")]
    Failed {
        tool: &'static str,
        path: PathBuf,
        detail: String,
    },
}

/// A subtitle stream inside a container.
#[derive(Debug, Clone, PartialEq)]
pub struct SubtitleStream {
    /// The stream's index in the container (`-map 0:{index}`).
    pub index: u32,
    pub codec: String,
    pub language: String,
    pub default: bool,
}

impl SubtitleStream {
    /// Text subtitles ffmpeg can write as SRT; picture subtitles (DVD, Blu-ray
    /// PGS) cannot be read as lines.
    pub fn is_text(&self) -> bool {
        matches!(
            self.codec.as_str(),
            "subrip" | "srt" | "ass" | "ssa" | "mov_text" | "webvtt" | "text" | "microdvd"
        )
    }
}

/// What ffprobe says of a film.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub duration_s: f64,
    pub has_video: bool,
    pub subtitles: Vec<SubtitleStream>,
}

#[derive(Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
    format: Option<FormatJson>,
}

#[derive(Deserialize)]
struct StreamJson {
    index: u32,
    #[serde(default)]
    codec_type: String,
    #[serde(default)]
    codec_name: String,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    tags: std::collections::HashMap<String, String>,
    #[serde(default)]
    disposition: std::collections::HashMap<String, i64>,
}

#[derive(Deserialize)]
struct FormatJson {
    duration: Option<String>,
}

fn run(
    tool: &'static str,
    path: &Path,
    limit: Duration,
    cmd: &mut Command,
) -> Result<std::process::Output, Error> {
    let failed = |detail: String| Error::Failed {
        tool,
        path: path.to_path_buf(),
        detail,
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing { tool },
            _ => failed(e.to_string()),
        })?;
    // Both pipes are read while the tool runs, so it never stalls on a
    // full one.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = match child
        .wait_timeout(limit)
        .map_err(|e| failed(e.to_string()))?
    {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::TooSlow {
                tool,
                path: path.to_path_buf(),
                limit,
            });
        }
    };
    let out = std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if !out.status.success() {
        return Err(failed(last_words(&out.stderr)));
    }
    Ok(out)
}

/// The last non-empty line a tool wrote, which names what went wrong.
fn last_words(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message")
        .chars()
        .take(300)
        .collect()
}

/// Length and streams of a film. A file ffprobe cannot read, or one with
/// neither a length nor a picture, is an error: it cannot be played.
pub fn probe(path: &Path) -> Result<Probe, Error> {
    let out = run(
        "ffprobe",
        path,
        QUICK,
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_format",
                "-show_streams",
            ])
            .arg(path),
    )?;
    parse_probe(path, &out.stdout)
}

/// What ffprobe said of `path` (its JSON), read: [`probe`] without running
/// it (the fuzzer's entry).
pub fn parse_probe(path: &Path, json: &[u8]) -> Result<Probe, Error> {
    let parsed: ProbeJson = serde_json::from_slice(json).map_err(|e| Error::Failed {
        tool: "ffprobe",
        path: path.to_path_buf(),
        detail: format!("unreadable answer: {e}"),
    })?;
    let num = |s: &Option<String>| s.as_deref().and_then(|d| d.parse::<f64>().ok());
    let duration_s = parsed
        .format
        .as_ref()
        .and_then(|f| num(&f.duration))
        .or_else(|| {
            parsed
                .streams
                .iter()
                .filter_map(|s| num(&s.duration))
                .reduce(f64::max)
        })
        .filter(|d| d.is_finite() && *d > 0.0);
    if let Some(d) = duration_s.filter(|d| *d > MAX_FILM_S) {
        return Err(Error::Failed {
            tool: "ffprobe",
            path: path.to_path_buf(),
            detail: format!(
                "the file claims to last {:.0} hours (more than {:.0}): a damaged header; not a film to play",
                d / 3600.0,
                MAX_FILM_S / 3600.0
            ),
        });
    }
    let has_video = parsed
        .streams
        .iter()
        .any(|s| s.codec_type == "video" && s.disposition.get("attached_pic") != Some(&1));
    let Some(duration_s) = duration_s else {
        return Err(Error::Failed {
            tool: "ffprobe",
            path: path.to_path_buf(),
            detail: "the file has no length (not a film, or damaged)".into(),
        });
    };
    let subtitles = parsed
        .streams
        .iter()
        .filter(|s| s.codec_type == "subtitle")
        .map(|s| SubtitleStream {
            index: s.index,
            codec: s.codec_name.clone(),
            language: s.tags.get("language").cloned().unwrap_or_default(),
            default: s.disposition.get("default") == Some(&1),
        })
        .collect();
    Ok(Probe {
        duration_s,
        has_video,
        subtitles,
    })
}

/// The text subtitle stream to read: English first, then the default one,
/// then the first.
pub fn pick_subtitles(streams: &[SubtitleStream]) -> Option<&SubtitleStream> {
    let text: Vec<&SubtitleStream> = streams.iter().filter(|s| s.is_text()).collect();
    text.iter()
        .find(|s| matches!(s.language.as_str(), "eng" | "en"))
        .or_else(|| text.iter().find(|s| s.default))
        .or_else(|| text.first())
        .copied()
}

/// An embedded subtitle stream, written out as SRT.
pub fn extract_subtitles(
    path: &Path,
    stream: &SubtitleStream,
    limit: Duration,
) -> Result<Vec<u8>, Error> {
    let out = run(
        "ffmpeg",
        path,
        limit,
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(path)
            .args(["-map", &format!("0:{}", stream.index), "-f", "srt", "-"]),
    )?;
    Ok(out.stdout)
}

/// Times (s) where the picture changes by more than `threshold` (0–1), from
/// ffmpeg's scene-change score on a small copy of each frame.
pub fn scene_cuts(path: &Path, threshold: f64, limit: Duration) -> Result<Vec<f64>, Error> {
    let filter = format!("scale=160:-2,select='gt(scene,{threshold:.3})',showinfo");
    let out = run(
        "ffmpeg",
        path,
        limit,
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-nostats", "-i"])
            .arg(path)
            .args([
                "-map", "0:v:0", "-an", "-sn", "-vf", &filter, "-f", "null", "-",
            ]),
    )?;
    let text = String::from_utf8_lossy(&out.stderr);
    let mut cuts: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("Parsed_showinfo"))
        .filter_map(|l| {
            let rest = &l[l.find("pts_time:")? + "pts_time:".len()..];
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .filter(|t| t.is_finite() && *t > 0.0)
        .collect();
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    Ok(cuts)
}

/// Times (s) of the video's keyframes, from packet flags (nothing decoded).
pub fn keyframes(path: &Path, limit: Duration) -> Result<Vec<f64>, Error> {
    let out = run(
        "ffprobe",
        path,
        limit,
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "packet=pts_time,flags",
                "-of",
                "csv=p=0",
            ])
            .arg(path),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut keys: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let (t, flags) = l.split_once(',')?;
            flags.contains('K').then(|| t.parse::<f64>().ok()).flatten()
        })
        .filter(|t| t.is_finite())
        .collect();
    keys.sort_by(f64::total_cmp);
    Ok(keys)
}

/// The last keyframe at or before `t` (or `t` itself when none is).
pub fn keyframe_at_or_before(keys: &[f64], t: f64) -> f64 {
    let i = keys.partition_point(|k| *k <= t + 1e-6);
    if i == 0 { t } else { keys[i - 1] }
}

/// A JPEG of the frame at `at_s`, `width` pixels wide, written to `out`.
pub fn thumbnail(path: &Path, at_s: f64, width: u32, out: &Path) -> Result<(), Error> {
    let tmp = out.with_extension("part.jpg");
    run(
        "ffmpeg",
        path,
        QUICK,
        Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-ss",
                &format!("{at_s:.3}"),
                "-i",
            ])
            .arg(path)
            .args([
                "-frames:v",
                "1",
                "-an",
                "-sn",
                "-vf",
                &format!("scale={width}:-2"),
                "-q:v",
                "5",
                "-f",
                "mjpeg",
            ])
            .arg(&tmp),
    )?;
    if std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0) == 0 {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Failed {
            tool: "ffmpeg",
            path: path.to_path_buf(),
            detail: format!("no picture at {at_s:.2} s"),
        });
    }
    std::fs::rename(&tmp, out).map_err(|e| Error::Failed {
        tool: "ffmpeg",
        path: out.to_path_buf(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_that_hangs_is_stopped_at_its_bound() {
        let started = std::time::Instant::now();
        let err = run(
            "ffprobe",
            Path::new("fifo.mp4"),
            Duration::from_millis(300),
            Command::new("sleep").arg("30"),
        )
        .unwrap_err();
        assert!(matches!(err, Error::TooSlow { .. }), "{err}");
        assert!(err.to_string().contains("fifo.mp4"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // Much output on both pipes is read while the tool runs.
        let out = run(
            "ffmpeg",
            Path::new("x"),
            QUICK,
            Command::new("sh").args([
                "-c",
                "head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2",
            ]),
        )
        .unwrap();
        assert_eq!((out.stdout.len(), out.stderr.len()), (300_000, 300_000));
        assert!(whole_film(1e15) <= Duration::from_secs_f64(MAX_FILM_S * 3.0));
        assert_eq!(whole_film(1.0), QUICK);
    }

    #[test]
    fn keyframe_lookup() {
        let keys = [0.0, 2.0, 4.0];
        assert_eq!(keyframe_at_or_before(&keys, 3.9), 2.0);
        assert_eq!(keyframe_at_or_before(&keys, 4.0), 4.0);
        assert_eq!(keyframe_at_or_before(&[], 1.5), 1.5);
        assert_eq!(keyframe_at_or_before(&[1.0], 0.5), 0.5);
    }

    #[test]
    fn english_text_subtitles_are_preferred() {
        let s = |index, codec: &str, language: &str, default| SubtitleStream {
            index,
            codec: codec.into(),
            language: language.into(),
            default,
        };
        let streams = [
            s(2, "hdmv_pgs_subtitle", "eng", true),
            s(3, "subrip", "fre", true),
            s(4, "subrip", "eng", false),
        ];
        assert_eq!(pick_subtitles(&streams).map(|s| s.index), Some(4));
        assert_eq!(pick_subtitles(&streams[..2]).map(|s| s.index), Some(3));
        assert_eq!(pick_subtitles(&streams[..1]), None);
    }
}
