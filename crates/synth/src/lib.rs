//! Makes short films whose dialogue is real speech (espeak-ng), with each line
//! drawn on screen (ffmpeg `drawtext`) and written to a matching `.srt`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

mod demo;
mod subtitles;
pub use demo::{DEMO_FILMS, demo_library};
pub use subtitles::subtitle_library;

/// Leading silence before the first line (tiny.en misreads speech at sample 0).
pub const LEAD_SILENCE_S: f64 = 0.4;
/// Silence between two lines.
pub const GAP_S: f64 = 0.7;
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{tool} is not installed ({hint})")]
    Missing {
        tool: &'static str,
        hint: &'static str,
    },
    #[error("{tool} failed: {detail}")]
    Tool { tool: &'static str, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot read espeak-ng's audio: {0}")]
    Wav(#[from] hound::Error),
}

/// One line of a generated film and where it is spoken.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// A film written to disk with its sidecar subtitles.
#[derive(Debug, Clone)]
pub struct Film {
    pub video: PathBuf,
    pub srt: PathBuf,
    pub lines: Vec<Line>,
    pub duration_s: f64,
}

/// Checks that a tool runs, or says how to install it.
pub fn require(tool: &'static str, hint: &'static str) -> Result<(), Error> {
    match Command::new(tool).arg("--version").output() {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::Missing { tool, hint }),
    }
}

/// A film of `seconds` with a black 16×16 picture at one frame a second and
/// no sound, for libraries whose lines matter, not their pictures (films of
/// a generated library can be hard links to one).
pub fn blank_film(path: &Path, seconds: u32) -> Result<(), Error> {
    run(
        "ffmpeg",
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("color=c=black:s=16x16:r=1:d={seconds}"))
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "30",
                "-pix_fmt",
                "yuv420p",
                "-f",
                "mp4",
            ])
            .arg(path),
    )
}

fn run(tool: &'static str, cmd: &mut Command) -> Result<(), Error> {
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Missing {
            tool,
            hint: "apt-get install ffmpeg espeak-ng",
        },
        _ => Error::Io(e),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(4).collect();
    Err(Error::Tool {
        tool,
        detail: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
    })
}

/// Speaks `text` with espeak-ng and returns 22.05 kHz mono samples.
pub fn speak(text: &str, voice: &str) -> Result<(Vec<i16>, u32), Error> {
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("line.wav");
    run(
        "espeak-ng",
        Command::new("espeak-ng")
            .args(["-v", voice, "-s", "150", "-w"])
            .arg(&wav)
            .arg(text),
    )?;
    let mut reader = hound::WavReader::open(&wav)?;
    let rate = reader.spec().sample_rate;
    let samples = reader.samples::<i16>().collect::<Result<Vec<_>, _>>()?;
    Ok((samples, rate))
}

/// Speaks `text` with espeak-ng and returns it as Whisper hears it: 16 kHz
/// mono 16-bit samples (resampled by ffmpeg), without added silence.
pub fn speech_pcm16k(text: &str) -> Result<Vec<i16>, Error> {
    speak_16k(text, "en-us", 150)
}

/// [`speech_pcm16k`] in `voice` at `words_per_minute`.
pub fn speak_16k(text: &str, voice: &str, words_per_minute: u32) -> Result<Vec<i16>, Error> {
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("speech.wav");
    run(
        "espeak-ng",
        Command::new("espeak-ng")
            .args(["-v", voice, "-s", &words_per_minute.to_string(), "-w"])
            .arg(&wav)
            .arg(text),
    )?;
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&wav)
        .args(["-ar", "16000", "-ac", "1", "-f", "s16le", "-"])
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing {
                tool: "ffmpeg",
                hint: "apt-get install ffmpeg",
            },
            _ => Error::Io(e),
        })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "ffmpeg",
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

/// Leading and trailing silence off 16 kHz speech (espeak-ng pads both),
/// so pauses put between parts are the pauses heard.
pub fn trim_silence(pcm: &[i16]) -> &[i16] {
    let loud = |s: &i16| s.unsigned_abs() > 300;
    let start = pcm.iter().position(loud).unwrap_or(pcm.len());
    let end = pcm.iter().rposition(loud).map_or(start, |i| i + 1);
    &pcm[start..end.max(start)]
}

/// Writes `samples` as a mono 16-bit WAV file.
pub fn write_wav(path: &Path, samples: &[i16], rate: u32) -> Result<(), Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for s in samples {
        w.write_sample(*s)?;
    }
    w.finalize()?;
    Ok(())
}

/// Formats seconds as an SRT timestamp, `HH:MM:SS,mmm`.
pub fn srt_time(seconds: f64) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02},{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The SRT document for `lines`.
pub fn srt(lines: &[Line]) -> String {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            srt_time(l.start_s),
            srt_time(l.end_s),
            l.text
        );
    }
    out
}

/// Makes `<dir>/<stem>.mp4` and `<dir>/<stem>.srt`: the lines spoken one after
/// another by `voice`, each drawn on screen while it is spoken.
pub fn make_film(dir: &Path, stem: &str, voice: &str, lines: &[&str]) -> Result<Film, Error> {
    std::fs::create_dir_all(dir)?;
    let work = tempfile::tempdir()?;
    let mut audio: Vec<i16> = Vec::new();
    let mut rate = 22_050;
    let mut timed = Vec::new();
    let mut filters = Vec::new();
    let silence = |audio: &mut Vec<i16>, rate: u32, s: f64| {
        audio.extend(std::iter::repeat_n(0, (s * f64::from(rate)) as usize));
    };
    silence(&mut audio, rate, LEAD_SILENCE_S);
    for (i, text) in lines.iter().enumerate() {
        let (samples, r) = speak(text, voice)?;
        if i == 0 && r != rate {
            // Re-lay the lead silence at espeak-ng's rate.
            rate = r;
            audio.clear();
            silence(&mut audio, rate, LEAD_SILENCE_S);
        }
        let start_s = audio.len() as f64 / f64::from(rate);
        audio.extend_from_slice(&samples);
        let end_s = audio.len() as f64 / f64::from(rate);
        silence(&mut audio, rate, GAP_S);
        let textfile = work.path().join(format!("line{i}.txt"));
        std::fs::write(&textfile, text)?;
        let font = if Path::new(FONT).exists() {
            format!("fontfile={FONT}:")
        } else {
            String::new()
        };
        filters.push(format!(
            "drawtext={font}textfile='{}':fontcolor=white:fontsize=20:x=(w-text_w)/2:y=h-60:enable='between(t,{start_s:.3},{end_s:.3})'",
            textfile.display()
        ));
        timed.push(Line {
            text: (*text).to_string(),
            start_s,
            end_s,
        });
    }
    let duration_s = audio.len() as f64 / f64::from(rate);
    let wav = work.path().join("audio.wav");
    write_wav(&wav, &audio, rate)?;
    // A title card in the upper half, so every frame says which film it is.
    let title_file = work.path().join("title.txt");
    std::fs::write(&title_file, stem.replace(['-', '_'], " "))?;
    filters.insert(
        0,
        format!(
            "drawtext={}textfile='{}':fontcolor=0xffd27f:fontsize=24:x=(w-text_w)/2:y=40",
            if Path::new(FONT).exists() {
                format!("fontfile={FONT}:")
            } else {
                String::new()
            },
            title_file.display()
        ),
    );
    let video = dir.join(format!("{stem}.mp4"));
    run(
        "ffmpeg",
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
            ])
            .arg(format!("color=c=0x1d2b3a:s=480x270:r=12:d={duration_s:.3}"))
            .arg("-i")
            .arg(&wav)
            .arg("-vf")
            .arg(filters.join(","))
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                "-g",
                "12",
                "-c:a",
                "aac",
                "-b:a",
                "64k",
                "-shortest",
                "-movflags",
                "+faststart",
            ])
            .arg(&video),
    )?;
    let srt_path = dir.join(format!("{stem}.srt"));
    std::fs::write(&srt_path, srt(&timed))?;
    Ok(Film {
        video,
        srt: srt_path,
        lines: timed,
        duration_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srt_times() {
        assert_eq!(srt_time(0.0), "00:00:00,000");
        assert_eq!(srt_time(3723.4567), "01:02:03,457");
        let doc = srt(&[Line {
            text: "Hi.".into(),
            start_s: 0.5,
            end_s: 1.25,
        }]);
        assert_eq!(doc, "1\n00:00:00,500 --> 00:00:01,250\nHi.\n\n");
    }

    #[test]
    fn speech_at_16k() {
        let pcm = speech_pcm16k("Hello there").unwrap();
        let seconds = pcm.len() as f64 / 16_000.0;
        assert!((0.4..3.0).contains(&seconds), "{seconds} s");
        assert!(pcm.iter().any(|s| s.unsigned_abs() > 1000), "silent");
    }
}
