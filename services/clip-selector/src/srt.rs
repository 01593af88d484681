//! A tolerant SRT reader: bad blocks are skipped and reported, the rest kept.
//! Strict parsers reject a whole file for one bad cue; a gallery library is
//! made of files from everywhere, so this one repairs what it can.

/// One subtitle cue.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

/// Parses SRT text. Returns the cues in time order and the number of blocks
/// that were skipped (no timing line, bad times, empty text).
pub fn parse(input: &str) -> (Vec<Cue>, usize) {
    let input = input
        .trim_start_matches('\u{feff}')
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut cues = Vec::new();
    let mut skipped = 0;
    for block in input.split("\n\n") {
        let lines: Vec<&str> = block
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            continue;
        }
        let Some(pos) = lines.iter().position(|l| l.contains("-->")) else {
            skipped += 1;
            continue;
        };
        let Some((start_s, end_s)) = parse_timing(lines[pos]) else {
            skipped += 1;
            continue;
        };
        let text = lines[pos + 1..]
            .iter()
            .map(|l| strip_tags(l))
            .collect::<Vec<_>>()
            .join(" ")
            .trim()
            .to_string();
        if text.is_empty() || end_s <= start_s {
            skipped += 1;
            continue;
        }
        cues.push(Cue {
            start_s,
            end_s,
            text,
        });
    }
    cues.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    (cues, skipped)
}

fn parse_timing(line: &str) -> Option<(f64, f64)> {
    let (a, b) = line.split_once("-->")?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
            vec![
                Cue {
                    start_s: 1.0,
                    end_s: 2.5,
                    text: "Hello there".into()
                },
                Cue {
                    start_s: 6.0,
                    end_s: 7.0,
                    text: "Two lines".into()
                },
            ]
        );
        assert_eq!(skipped, 3);
    }

    #[test]
    fn garbage_never_panics() {
        for doc in ["", "-->", "1\n-->\n", "99:99:99,999 --> :::\nx", "\n\n\n"] {
            let _ = parse(doc);
        }
    }
}
