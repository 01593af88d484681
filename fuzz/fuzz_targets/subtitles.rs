//! Subtitle files as they come (any bytes, any encoding): read as SRT, as
//! WebVTT and as sniffed. Never a panic; every cue read has a sane range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use library::subtitles::{self, Format};

fuzz_target!(|data: &[u8]| {
    for format in [None, Some(Format::Srt), Some(Format::Vtt)] {
        let (cues, _report) = subtitles::read(data, format);
        for c in &cues {
            assert!(c.start_s.is_finite() && c.end_s.is_finite(), "{c:?}");
            assert!(c.start_s <= c.end_s, "{c:?}");
        }
    }
});
