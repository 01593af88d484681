//! Tolerant subtitle reading: SRT and WebVTT, in whatever encoding the file
//! came in. Strict parsers reject a whole file for one bad cue; a gallery
//! library is made of files from everywhere, so this one repairs what it can
//! (overlapping cues, empty lines, stray markup) and counts what it dropped.

/// One subtitle cue.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

impl Cue {
    pub fn new(start_s: f64, end_s: f64, text: &str) -> Cue {
        Cue {
            start_s,
            end_s,
            text: text.to_string(),
        }
    }
}

/// What reading a subtitle file had to do besides reading it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Blocks dropped: no timing line, bad times, empty text, zero length.
    pub skipped: usize,
    /// Cues whose end was moved back to the next cue's start.
    pub overlaps_repaired: usize,
    /// The text encoding the bytes were read as, when it was not UTF-8.
    pub encoding: Option<&'static str>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.skipped == 0 && self.overlaps_repaired == 0 && self.encoding.is_none()
    }
}

/// The subtitle formats read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Srt,
    Vtt,
}

/// Decodes subtitle bytes: UTF-8 (with or without BOM), UTF-16 with a BOM,
/// and otherwise the legacy encoding the content looks like (Windows-1252,
/// Latin-1, …), as browsers guess it.
pub fn decode(bytes: &[u8]) -> (String, Option<&'static str>) {
    if let Some((enc, _)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_with_bom_removal(bytes);
        let name = (enc != encoding_rs::UTF_8).then(|| enc.name());
        return (text.into_owned(), name);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return (text.to_string(), None);
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    let enc = detector.guess(None, true);
    let (text, _, _) = enc.decode(bytes);
    (text.into_owned(), Some(enc.name()))
}

/// Reads subtitle bytes in `format` (or the format the text looks like).
pub fn read(bytes: &[u8], format: Option<Format>) -> (Vec<Cue>, Report) {
    let (text, encoding) = decode(bytes);
    let format = format.unwrap_or_else(|| sniff(&text));
    let (cues, mut report) = parse_as(&text, format);
    report.encoding = encoding;
    (cues, report)
}

/// WebVTT files start with `WEBVTT`; everything else is read as SRT.
pub fn sniff(text: &str) -> Format {
    if text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with("WEBVTT")
    {
        Format::Vtt
    } else {
        Format::Srt
    }
}

/// Parses SRT text. Returns the cues in time order and the number of blocks
/// that were skipped.
pub fn parse(input: &str) -> (Vec<Cue>, usize) {
    let (cues, report) = parse_as(input, Format::Srt);
    (cues, report.skipped)
}

fn parse_as(input: &str, format: Format) -> (Vec<Cue>, Report) {
    let input = input
        .trim_start_matches('\u{feff}')
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut cues = Vec::new();
    let mut report = Report::default();
    for (n, block) in input.split("\n\n").enumerate() {
        let lines: Vec<&str> = block
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            continue;
        }
        if format == Format::Vtt && is_vtt_header_or_note(n, lines[0]) {
            continue;
        }
        let Some(pos) = lines.iter().position(|l| l.contains("-->")) else {
            report.skipped += 1;
            continue;
        };
        let Some((start_s, end_s)) = parse_timing(lines[pos]) else {
            report.skipped += 1;
            continue;
        };
        let text = lines[pos + 1..]
            .iter()
            .map(|l| strip_tags(l))
            .map(|l| l.trim().trim_start_matches('-').trim().to_string())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let text = unescape(&text);
        if text.is_empty() || end_s <= start_s {
            report.skipped += 1;
            continue;
        }
        cues.push(Cue {
            start_s,
            end_s,
            text,
        });
    }
    cues.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    report.overlaps_repaired = repair_overlaps(&mut cues, &mut report.skipped);
    (cues, report)
}

/// The `WEBVTT` header block, `NOTE`, `STYLE` and `REGION` blocks carry no cue.
fn is_vtt_header_or_note(block: usize, first: &str) -> bool {
    (block == 0 && first.starts_with("WEBVTT"))
        || ["NOTE", "STYLE", "REGION"]
            .iter()
            .any(|k| first == *k || first.starts_with(&format!("{k} ")))
}

/// Overlapping cues (a line still on screen when the next one starts) are cut
/// at the next start, so every clip holds one line; a cue left with (almost)
/// nothing is dropped. Returns how many cues were shortened.
fn repair_overlaps(cues: &mut Vec<Cue>, dropped: &mut usize) -> usize {
    let mut repaired = 0;
    for i in 0..cues.len().saturating_sub(1) {
        let next_start = cues[i + 1].start_s;
        if cues[i].end_s > next_start {
            cues[i].end_s = next_start;
            repaired += 1;
        }
    }
    let before = cues.len();
    cues.retain(|c| c.end_s - c.start_s >= 0.05);
    *dropped += before - cues.len();
    repaired
}

fn parse_timing(line: &str) -> Option<(f64, f64)> {
    let (a, b) = line.split_once("-->")?;
    let a = a.split_whitespace().last()?;
    let b = b.split_whitespace().next()?;
    Some((parse_time(a.trim())?, parse_time(b.trim())?))
}

/// `HH:MM:SS,mmm` (also `.` as separator, or without hours).
fn parse_time(t: &str) -> Option<f64> {
    let t = t.replace(',', ".");
    let parts: Vec<&str> = t.split(':').collect();
    let (h, m, s) = match parts.as_slice() {
        [h, m, s] => (
            h.parse::<f64>().ok()?,
            m.parse::<f64>().ok()?,
            s.parse::<f64>().ok()?,
        ),
        [m, s] => (0.0, m.parse::<f64>().ok()?, s.parse::<f64>().ok()?),
        _ => return None,
    };
    let v = h * 3600.0 + m * 60.0 + s;
    (v.is_finite() && v >= 0.0).then_some(v)
}

fn strip_tags(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut depth = 0usize;
    for c in line.chars() {
        match c {
            '<' | '{' => depth += 1,
            '>' | '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The character references WebVTT (and some SRT writers) use.
fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(a: f64, b: f64, t: &str) -> Cue {
        Cue::new(a, b, t)
    }

    #[test]
    fn parses_good_and_skips_bad_blocks() {
        let doc = "\u{feff}1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Hello</i> there\r\n\r\n\
                   2\nbroken timing\nText\n\n\
                   3\n00:00:05.000 --> 00:00:04,000\nbackwards\n\n\
                   4\n00:00:03,000 --> 00:00:04,000\n\n\
                   5\n00:00:06,000 --> 00:00:07,000 X1:10\nTwo\nlines\n";
        let (cues, skipped) = parse(doc);
        assert_eq!(
            cues,
            vec![cue(1.0, 2.5, "Hello there"), cue(6.0, 7.0, "Two lines")]
        );
        assert_eq!(skipped, 3);
    }

    #[test]
    fn reads_webvtt() {
        let doc = "WEBVTT - a film\n\nNOTE written by hand\nacross lines\n\n\
                   STYLE\n::cue { color: red }\n\n\
                   intro\n00:01.000 --> 00:02.000 align:start position:10%\n<v Ann>Hi &amp; welcome</v>\n\n\
                   00:00:03.500 --> 00:00:05.000\n- Who are you?\n- Nobody.\n";
        let (cues, report) = read(doc.as_bytes(), None);
        assert_eq!(
            cues,
            vec![
                cue(1.0, 2.0, "Hi & welcome"),
                cue(3.5, 5.0, "Who are you? Nobody.")
            ]
        );
        assert!(report.is_clean(), "{report:?}");
    }

    #[test]
    fn legacy_encodings_are_detected() {
        // "Café, déjà vu !" in Windows-1252 (as many old .srt files are).
        let mut bytes = b"1\n00:00:01,000 --> 00:00:02,000\nCaf".to_vec();
        bytes.extend([0xe9]);
        bytes.extend(b", d");
        bytes.extend([0xe9]);
        bytes.extend(b"j");
        bytes.extend([0xe0]);
        bytes.extend(b" vu, tr");
        bytes.extend([0xe8]);
        bytes.extend(b"s cher !\n");
        let (cues, report) = read(&bytes, None);
        assert_eq!(cues[0].text, "Café, déjà vu, très cher !");
        assert_eq!(report.encoding, Some("windows-1252"));
        // UTF-16 with a BOM.
        let utf16: Vec<u8> = "\u{feff}1\n00:00:01,000 --> 00:00:02,000\nNaïve\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let (cues, report) = read(&utf16, None);
        assert_eq!(cues[0].text, "Naïve");
        assert_eq!(report.encoding, Some("UTF-16LE"));
    }

    #[test]
    fn overlaps_are_cut_and_zero_length_lines_dropped() {
        let doc = "1\n00:00:01,000 --> 00:00:04,000\nFirst\n\n\
                   2\n00:00:03,000 --> 00:00:05,000\nSecond\n\n\
                   3\n00:00:03,000 --> 00:00:03,000\nZero\n\n\
                   4\n00:00:05,000 --> 00:00:06,000\nThird\n";
        let (cues, report) = read(doc.as_bytes(), Some(Format::Srt));
        assert_eq!(
            cues,
            vec![
                cue(1.0, 3.0, "First"),
                cue(3.0, 5.0, "Second"),
                cue(5.0, 6.0, "Third")
            ]
        );
        assert_eq!(report.overlaps_repaired, 1);
        assert_eq!(report.skipped, 1);
    }

    #[test]
    fn garbage_never_panics() {
        for doc in [
            "",
            "-->",
            "1\n-->\n",
            "99:99:99,999 --> :::\nx",
            "\n\n\n",
            "WEBVTT",
            "WEBVTT\n\n-->",
        ] {
            let _ = read(doc.as_bytes(), None);
        }
        let _ = read(&[0xff, 0xfe, 0x00], None);
        let _ = read(&[0x80, 0x81, 0xfe, b'\n'], None);
    }
}
