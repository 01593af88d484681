//! What ffprobe says of a film (its JSON, as a damaged or hostile file can
//! make it say): read into a length and streams or refused, never a panic;
//! a length read is finite and positive, and the subtitle stream picked is
//! one of those read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use library::media;

fuzz_target!(|data: &[u8]| {
    if let Ok(probe) = media::parse_probe(std::path::Path::new("fuzz.mkv"), data) {
        assert!(probe.duration_s.is_finite() && probe.duration_s > 0.0);
        if let Some(s) = media::pick_subtitles(&probe.subtitles) {
            assert!(probe.subtitles.iter().any(|t| t.index == s.index));
        }
    }
});
