//! Where the Pi's ears are: a microphone through ALSA (cpal), or simulated
//! inputs for tests and the demo (a WAV file heard once after the greeting,
//! a WAV file on a loop, raw PCM on stdin). Everything comes out as 16 kHz
//! mono i16.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use rubato::audioadapter::Adapter;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, PolynomialDegree, Resampler as _};

use super::vad::RATE;

/// `CINEMA_PI_AUDIO_INPUT`.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Deaf: typed lines only.
    None,
    /// Heard once, starting when the greeting has finished (and the echo
    /// gate has opened), as a visitor would answer the TV.
    Wav(PathBuf),
    /// Heard over and over from the start.
    WavLoop(PathBuf),
    /// Signed 16-bit little-endian mono PCM at 16 kHz on standard input.
    Stdin,
    /// A capture device by cpal name or ALSA id (`hw:1,0`, `default`).
    Alsa(String),
}

impl FromStr for Input {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        let need = |what: &str| {
            if arg.is_empty() {
                Err(format!(
                    "audio input `{kind}:` needs {what}, e.g. `{kind}:/path/to/speech.wav`"
                ))
            } else {
                Ok(arg.to_string())
            }
        };
        match kind {
            "" | "none" => Ok(Input::None),
            "wav" => Ok(Input::Wav(need("a file")?.into())),
            "wav-loop" => Ok(Input::WavLoop(need("a file")?.into())),
            "stdin" => Ok(Input::Stdin),
            "alsa" => Ok(Input::Alsa(if arg.is_empty() {
                "default".into()
            } else {
                arg.into()
            })),
            other => Err(format!(
                "unknown audio input {other:?}: use none, wav:PATH, wav-loop:PATH, stdin or alsa:DEVICE"
            )),
        }
    }
}

impl Input {
    pub fn device_name(&self) -> String {
        match self {
            Input::None => "none".into(),
            Input::Wav(p) => format!("wav:{}", p.display()),
            Input::WavLoop(p) => format!("wav-loop:{}", p.display()),
            Input::Stdin => "stdin".into(),
            Input::Alsa(d) => format!("alsa:{d}"),
        }
    }
}

/// Converts a stream at `rate` to 16 kHz, chunk by chunk.
pub struct Resampler {
    inner: Option<Async<f32>>,
    pending: Vec<f32>,
}

impl Resampler {
    pub fn new(rate: u32) -> Result<Resampler, String> {
        if rate == 0 {
            return Err("a sample rate of 0".into());
        }
        let inner = if rate == RATE {
            None
        } else {
            Some(
                Async::<f32>::new_poly(
                    RATE as f64 / rate as f64,
                    1.0,
                    PolynomialDegree::Cubic,
                    (rate / 50) as usize,
                    1,
                    FixedAsync::Input,
                )
                .map_err(|e| format!("cannot resample from {rate} Hz: {e}"))?,
            )
        };
        Ok(Resampler {
            inner,
            pending: Vec::new(),
        })
    }

    /// Mono samples in [-1, 1] at the input rate → 16 kHz i16.
    pub fn push(&mut self, samples: &[f32]) -> Vec<i16> {
        let Some(r) = self.inner.as_mut() else {
            return samples.iter().map(|&s| to_i16(s)).collect();
        };
        self.pending.extend_from_slice(samples);
        let mut out = Vec::new();
        loop {
            let need = r.input_frames_next();
            if self.pending.len() < need {
                break;
            }
            let Ok(input) = InterleavedSlice::new(&self.pending[..need], 1, need) else {
                break;
            };
            if let Ok(res) = r.process(&input, None) {
                out.extend((0..res.frames()).map(|i| to_i16(res.read_sample(0, i).unwrap_or(0.0))));
            }
            self.pending.drain(..need);
        }
        out
    }
}

fn to_i16(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// A WAV file (any rate, any channel count, 16-bit or float) as 16 kHz mono.
pub fn read_wav(path: &Path) -> Result<Vec<i16>, String> {
    let mut reader =
        hound::WavReader::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let spec = reader.spec();
    let channels = spec.channels.max(1) as usize;
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?,
        hound::SampleFormat::Int => {
            let scale = (1i64 << (spec.bits_per_sample.clamp(8, 32) - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 / scale))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
    };
    let mono: Vec<f32> = samples
        .chunks(channels)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    let mut r = Resampler::new(spec.sample_rate)?;
    let mut out = r.push(&mono);
    // Flush what the resampler holds back with a little silence.
    out.extend(r.push(&vec![0.0; (spec.sample_rate / 10) as usize]));
    Ok(out)
}

/// A clip's sound as 16 kHz mono, decoded by ffmpeg (for the simulated
/// echo: what a microphone in front of the TV would hear).
pub async fn decode_clip(url: &str, start_s: f64, end_s: f64) -> Result<Vec<i16>, String> {
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-ss"])
        .arg(format!("{start_s:.3}"))
        .arg("-to")
        .arg(format!("{end_s:.3}"))
        .arg("-i")
        .arg(url)
        .args(["-vn", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run ffmpeg (apt-get install ffmpeg): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ffmpeg could not decode {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

/// The names of the capture devices cpal sees (ALSA on Linux).
pub fn list_devices() -> Result<Vec<String>, String> {
    use cpal::traits::{DeviceTrait, HostTrait};
    let host = cpal::default_host();
    let devices = host
        .input_devices()
        .map_err(|e| format!("cannot list audio inputs: {e}"))?;
    Ok(devices
        .filter_map(|d| d.description().ok().map(|n| n.name().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_parse_with_clear_errors() {
        assert_eq!("none".parse::<Input>(), Ok(Input::None));
        assert_eq!("".parse::<Input>(), Ok(Input::None));
        assert_eq!(
            "wav:/a b.wav".parse::<Input>(),
            Ok(Input::Wav("/a b.wav".into()))
        );
        assert_eq!(
            "wav-loop:x.wav".parse::<Input>(),
            Ok(Input::WavLoop("x.wav".into()))
        );
        assert_eq!("stdin".parse::<Input>(), Ok(Input::Stdin));
        assert_eq!(
            "alsa:hw:1,0".parse::<Input>(),
            Ok(Input::Alsa("hw:1,0".into()))
        );
        assert_eq!("alsa".parse::<Input>(), Ok(Input::Alsa("default".into())));
        assert!(
            "wav:"
                .parse::<Input>()
                .unwrap_err()
                .contains("needs a file")
        );
        assert!(
            "mic"
                .parse::<Input>()
                .unwrap_err()
                .contains("unknown audio input")
        );
    }

    #[test]
    fn resampling_keeps_duration_and_pitch() {
        // One second of 440 Hz at 22050 Hz (espeak-ng's rate).
        let tone: Vec<f32> = (0..22050)
            .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 22050.0).sin() * 0.5)
            .collect();
        let mut r = Resampler::new(22050).expect("resampler");
        let mut out = Vec::new();
        for chunk in tone.chunks(1000) {
            out.extend(r.push(chunk));
        }
        let n = out.len() as i64;
        assert!((n - 16_000).abs() < 800, "{n} samples for one second");
        // 440 Hz → about 880 zero crossings a second.
        let crossings = out.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count() as f64
            * 16_000.0
            / n as f64;
        assert!((crossings - 880.0).abs() < 20.0, "{crossings}");
        // 16 kHz passes through.
        let mut same = Resampler::new(16_000).expect("resampler");
        assert_eq!(same.push(&[0.5, -0.5]), vec![16384, -16384]);
        assert!(Resampler::new(0).is_err());
    }

    #[test]
    fn wav_files_come_out_as_16k_mono() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stereo.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("wav");
        for i in 0..48_000 {
            let v = ((i as f32 * 0.05).sin() * 10_000.0) as i16;
            w.write_sample(v).expect("sample");
            w.write_sample(v).expect("sample");
        }
        w.finalize().expect("finalize");
        let pcm = read_wav(&path).expect("read");
        assert!((pcm.len() as i64 - 16_000).abs() < 2_000, "{}", pcm.len());
        assert!(pcm.iter().any(|&s| s.abs() > 5_000));
        let err = read_wav(&dir.path().join("missing.wav")).unwrap_err();
        assert!(err.contains("missing.wav"), "{err}");
        std::fs::write(dir.path().join("junk.wav"), b"not a wav").expect("write");
        assert!(read_wav(&dir.path().join("junk.wav")).is_err());
    }
}
