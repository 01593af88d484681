//! An utterance's audio: checked and turned into what Whisper reads (16 kHz
//! mono `f32`). Bad audio is refused with a reason, never a panic.

/// The only sample rate accepted: Whisper's. Resampling is the Pi's job.
pub const SAMPLE_RATE: u32 = 16_000;
/// Audio shorter than this is padded with silence (whisper.cpp handles very
/// short input badly).
pub const MIN_SAMPLES: usize = SAMPLE_RATE as usize;

/// Why an utterance's audio was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadAudio {
    #[error("no audio: the utterance's pcm is empty")]
    Empty,
    #[error("pcm has an odd number of bytes ({0}); expected 16-bit little-endian samples")]
    OddLength(usize),
    #[error(
        "sample rate {0} Hz is not accepted: utterances must be 16000 Hz mono (the Pi resamples)"
    )]
    SampleRate(u32),
    #[error("utterance is {seconds:.1} s long, over the {max_s} s limit (max_utterance_s)")]
    TooLong { seconds: f64, max_s: u32 },
}

/// Checks an utterance's audio (16-bit LE mono at [`SAMPLE_RATE`], not empty,
/// at most `max_s` seconds) and converts it to `f32` samples in [-1, 1).
pub fn decode_pcm(sample_rate: u32, pcm: &[u8], max_s: u32) -> Result<Vec<f32>, BadAudio> {
    if pcm.is_empty() {
        return Err(BadAudio::Empty);
    }
    if !pcm.len().is_multiple_of(2) {
        return Err(BadAudio::OddLength(pcm.len()));
    }
    if sample_rate != SAMPLE_RATE {
        return Err(BadAudio::SampleRate(sample_rate));
    }
    let samples = pcm.len() / 2;
    if samples > max_s as usize * SAMPLE_RATE as usize {
        return Err(BadAudio::TooLong {
            seconds: samples as f64 / f64::from(SAMPLE_RATE),
            max_s,
        });
    }
    Ok(pcm
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect())
}

/// Pads `samples` with trailing silence to at least [`MIN_SAMPLES`].
pub fn pad_to_min(mut samples: Vec<f32>) -> Vec<f32> {
    if samples.len() < MIN_SAMPLES {
        samples.resize(MIN_SAMPLES, 0.0);
    }
    samples
}

/// Seconds of audio in `samples` at [`SAMPLE_RATE`].
pub fn duration_s(samples: usize) -> f64 {
    samples as f64 / f64::from(SAMPLE_RATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn accepts_16k_mono_i16() {
        let out = decode_pcm(16_000, &pcm(&[0, 16384, -32768, 32767]), 30).unwrap();
        assert_eq!(out, vec![0.0, 0.5, -1.0, 32767.0 / 32768.0]);
    }

    #[test]
    fn refusals_name_the_reason() {
        let cases: [(u32, Vec<u8>, BadAudio); 5] = [
            (16_000, vec![], BadAudio::Empty),
            (16_000, vec![1, 2, 3], BadAudio::OddLength(3)),
            (8_000, pcm(&[1, 2]), BadAudio::SampleRate(8_000)),
            (0, pcm(&[1, 2]), BadAudio::SampleRate(0)),
            (
                16_000,
                pcm(&vec![0; 16_000 * 2 + 1]),
                BadAudio::TooLong {
                    seconds: 2.0000625,
                    max_s: 2,
                },
            ),
        ];
        for (rate, bytes, want) in cases {
            assert_eq!(decode_pcm(rate, &bytes, 2), Err(want));
        }
        // Exactly the limit is fine.
        assert!(decode_pcm(16_000, &pcm(&vec![0; 32_000]), 2).is_ok());
        let e = decode_pcm(8_000, &pcm(&[1]), 30).unwrap_err().to_string();
        assert!(e.contains("8000 Hz") && e.contains("16000"), "{e}");
    }

    #[test]
    fn short_audio_is_padded_to_one_second() {
        assert_eq!(pad_to_min(vec![0.5; 10]).len(), MIN_SAMPLES);
        assert_eq!(pad_to_min(vec![0.5; 10])[9], 0.5);
        assert_eq!(pad_to_min(vec![0.0; 20_000]).len(), 20_000);
        assert_eq!(duration_s(8_000), 0.5);
    }
}
