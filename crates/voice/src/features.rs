//! Whisper-style log-mel features, as Smart Turn v3 reads them: the last
//! 8 s of 16 kHz audio (zero-padded at the front), normalized to zero mean
//! and unit variance, a centered 400-point STFT (periodic Hann window, hop
//! 160, reflect padding), the power spectrum onto 80 Slaney mel filters,
//! log10, clamped to 8 below the peak and scaled to about -1..1. The same
//! arithmetic as Hugging Face's `WhisperFeatureExtractor` (and pipecat's
//! numpy copy of it), in f64 as they do it; `tests/turn.rs` checks the two
//! agree on the same audio.

use std::sync::Arc;

use realfft::RealFftPlanner;
use realfft::num_complex::Complex;

pub const RATE: usize = 16_000;
/// Samples the model sees: 8 s.
pub const WINDOW: usize = RATE * 8;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 80;
/// Frames of one window (801 STFT frames less the last).
pub const FRAMES: usize = WINDOW / HOP;
const BINS: usize = N_FFT / 2 + 1;

/// The extractor: the window, the filterbank and the FFT plan, made once.
pub struct LogMel {
    hann: Vec<f64>,
    /// `[mel][bin]`.
    filters: Vec<[f64; BINS]>,
    fft: Arc<dyn realfft::RealToComplex<f64>>,
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

fn hz_to_mel(hz: f64) -> f64 {
    let (min_log_hz, min_log_mel, logstep) = (1000.0, 15.0, 27.0 / 6.4f64.ln());
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() * logstep
    } else {
        3.0 * hz / 200.0
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    let (min_log_hz, min_log_mel, logstep) = (1000.0, 15.0, 6.4f64.ln() / 27.0);
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        200.0 * mel / 3.0
    }
}

impl LogMel {
    pub fn new() -> Self {
        let hann = (0..N_FFT)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos())
            .collect();
        let (mel_min, mel_max) = (hz_to_mel(0.0), hz_to_mel(RATE as f64 / 2.0));
        let edges: Vec<f64> = (0..N_MELS + 2)
            .map(|i| mel_to_hz(mel_min + (mel_max - mel_min) * i as f64 / (N_MELS + 1) as f64))
            .collect();
        let fft_hz = |bin: usize| (RATE / 2) as f64 * bin as f64 / (BINS - 1) as f64;
        let filters = (0..N_MELS)
            .map(|m| {
                let enorm = 2.0 / (edges[m + 2] - edges[m]);
                let mut row = [0.0; BINS];
                for (bin, w) in row.iter_mut().enumerate() {
                    let f = fft_hz(bin);
                    let down = (f - edges[m]) / (edges[m + 1] - edges[m]);
                    let up = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1]);
                    *w = down.min(up).max(0.0) * enorm;
                }
                row
            })
            .collect();
        LogMel {
            hann,
            filters,
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT),
        }
    }

    /// Features of the last 8 s of `audio` (16 kHz, -1..1): `N_MELS` rows
    /// of `FRAMES`, row-major.
    pub fn features(&self, audio: &[f32]) -> Vec<f32> {
        let tail = &audio[audio.len().saturating_sub(WINDOW)..];
        let mut x = vec![0f32; WINDOW - tail.len()];
        x.extend_from_slice(tail);
        // Zero mean, unit variance, in f32 as the reference does it.
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / WINDOW as f64;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / WINDOW as f64;
        let (mean, sd) = (mean as f32, ((var as f32) + 1e-7).sqrt());
        let x: Vec<f64> = x.iter().map(|&v| ((v - mean) / sd) as f64).collect();
        // Reflect padding of N_FFT/2 on both sides.
        let pad = N_FFT / 2;
        let at = |i: isize| -> f64 {
            let n = WINDOW as isize;
            let j = if i < 0 {
                -i
            } else if i >= n {
                2 * (n - 1) - i
            } else {
                i
            };
            x[j as usize]
        };
        let mut frame = self.fft.make_input_vec();
        let mut spec: Vec<Complex<f64>> = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut logs = vec![0f64; N_MELS * FRAMES];
        let mut power = [0f64; BINS];
        for t in 0..FRAMES {
            let start = (t * HOP) as isize - pad as isize;
            for (k, v) in frame.iter_mut().enumerate() {
                *v = at(start + k as isize) * self.hann[k];
            }
            // Lengths are the plan's own: this cannot fail.
            let _ = self
                .fft
                .process_with_scratch(&mut frame, &mut spec, &mut scratch);
            for (p, c) in power.iter_mut().zip(&spec) {
                *p = c.norm_sqr();
            }
            for (m, row) in self.filters.iter().enumerate() {
                let e: f64 = row.iter().zip(&power).map(|(w, p)| w * p).sum();
                logs[m * FRAMES + t] = e.max(1e-10).log10();
            }
        }
        let peak = logs.iter().copied().fold(f64::MIN, f64::max);
        logs.iter()
            .map(|&l| ((l.max(peak - 8.0) + 4.0) / 4.0) as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filterbank_is_slaneys() {
        let m = LogMel::new();
        // Every filter is a triangle with some weight; the first starts at 0 Hz.
        for row in &m.filters {
            assert!(row.iter().any(|&w| w > 0.0));
            assert!(row.iter().all(|&w| w >= 0.0));
        }
        assert_eq!(m.filters[0][0], 0.0);
        assert!((hz_to_mel(mel_to_hz(20.0)) - 20.0).abs() < 1e-9);
        assert!((mel_to_hz(hz_to_mel(440.0)) - 440.0).abs() < 1e-9);
    }

    #[test]
    fn features_have_the_models_shape_and_range() {
        let m = LogMel::new();
        let tone: Vec<f32> = (0..RATE)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / RATE as f32).sin() * 0.3)
            .collect();
        let f = m.features(&tone);
        assert_eq!(f.len(), N_MELS * FRAMES);
        assert!(f.iter().all(|v| v.is_finite()));
        // Clamped to 8 (log10) below the peak, scaled by 1/4: a span of 2.
        let (lo, hi) = f
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(hi - lo <= 2.0 + 1e-5 && hi - lo > 1.0, "{lo} .. {hi}");
        // Silence alone (all padding) is finite too: no division by zero.
        assert!(m.features(&[]).iter().all(|v| v.is_finite()));
    }
}
