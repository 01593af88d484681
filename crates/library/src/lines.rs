//! What a subtitle line is. Real subtitles and converted screenplays hold
//! more than speech: stage directions (`[door slams]`, `ANGLE ON:`), credits
//! (`Subtitles by …`), song lyrics (`♪ … ♪`), names alone (`BARRY`,
//! `-- Mark Twain`) and fragments of a sentence cut across two lines. None
//! of those makes an answer; [`classify`] tells them apart from speech, and
//! [`spoken`] takes the words said out of a line (no speaker label, no
//! bracketed direction), for matching.

/// The kind of a subtitle line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Speech,
    /// A stage direction, sound description or screenplay heading.
    Direction,
    /// Who made the subtitles or the film, a web address.
    Credit,
    /// A line sung (marked with musical notes).
    Lyric,
    /// A name alone: a speaker label or an attribution.
    Name,
    /// Part of a sentence that runs over several lines.
    Fragment,
}

impl LineKind {
    /// The word shown on the wire (`Clip.not_speech`); empty for speech.
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Speech => "",
            LineKind::Direction => "direction",
            LineKind::Credit => "credit",
            LineKind::Lyric => "lyric",
            LineKind::Name => "name",
            LineKind::Fragment => "fragment",
        }
    }
}

const CREDITS: &[&str] = &[
    "subtitles by",
    "subtitle by",
    "subtitled by",
    "synced by",
    "sync by",
    "corrected by",
    "translated by",
    "captioning",
    "captioned by",
    "opensubtitles",
    "www.",
    "http://",
    "https://",
    "all rights reserved",
    "copyright",
    "©",
];

const HEADINGS: &[&str] = &[
    "INT.",
    "EXT.",
    "INT/EXT",
    "CUT TO",
    "FADE IN",
    "FADE OUT",
    "FADE TO",
    "DISSOLVE TO",
    "ANGLE ON",
    "CLOSE ON",
    "CLOSE UP",
    "SFX",
    "SEQ.",
    "CONTINUED",
    "SMASH CUT",
    "POV",
    "THE END",
];

/// Words a line may say alone, capitalised and without punctuation, that
/// are not names.
const ALONE: &[&str] = &[
    "yes", "no", "yeah", "yep", "nope", "okay", "ok", "hello", "hi", "hey", "thanks", "what",
    "why", "who", "where", "when", "how", "sure", "right", "well", "oh", "wow", "goodbye", "bye",
    "please", "sorry", "really", "maybe", "never", "always", "now", "wait", "stop", "help", "look",
    "listen", "come", "go", "run", "quiet", "enough", "fine", "good", "great", "hmm", "huh", "ah",
];

/// Words that do not end a sentence.
const CONNECTORS: &[&str] = &[
    "and", "or", "but", "the", "a", "an", "to", "of", "in", "on", "at", "for", "with", "from",
    "that", "which", "who", "my", "your", "his", "her", "their", "our", "its", "is", "are", "was",
    "were", "if", "because", "so", "than", "as", "by",
];

/// Whether a word is a speaker label or heading word: two or more letters,
/// none lowercase.
fn is_caps_word(w: &str) -> bool {
    let letters = w.chars().filter(|c| c.is_alphabetic()).count();
    letters >= 2 && !w.chars().any(char::is_lowercase)
}

/// Removes bracketed spans (`[…]`, `(…)`, `{…}`, `<…>`), keeping the rest.
fn without_brackets(line: &str) -> (String, bool) {
    let mut out = String::with_capacity(line.len());
    let mut depth = 0usize;
    let mut had = false;
    for c in line.chars() {
        match c {
            '[' | '(' | '{' | '<' => {
                depth += 1;
                had = true;
            }
            ']' | ')' | '}' | '>' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    (out, had)
}

/// The words said in `line`, and the speaker label it started with (if
/// any): bracketed directions, dialogue dashes and a leading label
/// (`BARRY:`, `JANET BENSON`, `Mary:`) removed; whitespace collapsed.
pub fn spoken(line: &str) -> (String, Option<String>) {
    let (text, _) = without_brackets(line);
    let text = text.trim().trim_start_matches(['-', '–', '—']).trim();
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let mut speaker = None;
    // `Name:` at the start.
    if let Some(colon) = words.iter().take(3).position(|w| w.ends_with(':')) {
        let label = words[..=colon].join(" ");
        let label = label.trim_end_matches(':');
        if label.chars().next().is_some_and(char::is_uppercase) && colon + 1 < words.len() {
            speaker = Some(label.to_string());
            words.drain(..=colon);
        }
    }
    // Capitals before mixed-case words (a screenplay's character cue).
    if speaker.is_none() {
        let caps = words.iter().take_while(|w| is_caps_word(w)).count();
        let rest_mixed = words
            .get(caps)
            .is_some_and(|w| w.chars().any(char::is_lowercase));
        if caps > 0 && caps <= 3 && rest_mixed && !(caps == 1 && words[0].len() <= 2) {
            speaker = Some(words[..caps].join(" "));
            words.drain(..caps);
        }
    }
    (words.join(" "), speaker)
}

/// What kind of line `line` is.
pub fn classify(line: &str) -> LineKind {
    let raw = line.trim();
    let lower = raw.to_lowercase();
    if CREDITS.iter().any(|c| lower.contains(c)) {
        return LineKind::Credit;
    }
    if raw.contains(['♪', '♫', '🎵', '🎶'])
        || (raw.len() > 2 && raw.starts_with('#') && raw.ends_with('#'))
    {
        return LineKind::Lyric;
    }
    if raw.starts_with("--") || raw.starts_with(['—', '―', '~']) {
        return LineKind::Name;
    }
    let (said, speaker) = spoken(raw);
    let unlabelled = without_brackets(raw).0;
    let unlabelled = unlabelled.trim_start_matches(['-', '–', '—', ' ']);
    if HEADINGS
        .iter()
        .any(|h| said.starts_with(h) || unlabelled.starts_with(h))
    {
        return LineKind::Direction;
    }
    if !said.chars().any(char::is_alphabetic) {
        return if speaker.is_some() || without_brackets(raw).1 {
            LineKind::Direction
        } else {
            LineKind::Name
        };
    }
    let words: Vec<&str> = said.split_whitespace().collect();
    let ends_sentence = said.ends_with(['.', '!', '?', '"', '”', '…', '\'']);
    // Capitals alone, a few words, no sentence: a name or a heading.
    if words.len() <= 3 && words.iter().all(|w| is_caps_word(w)) && !ends_sentence {
        return LineKind::Name;
    }
    let first = said.chars().find(|c| c.is_alphabetic());
    if first.is_some_and(char::is_lowercase) && !said.starts_with("...") {
        return LineKind::Fragment;
    }
    if said.ends_with([',', ';']) {
        return LineKind::Fragment;
    }
    let last = words
        .last()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .unwrap_or_default();
    if !ends_sentence && words.len() > 1 && CONNECTORS.contains(&last.as_str()) {
        return LineKind::Fragment;
    }
    // One capitalised word without punctuation that is not a word said
    // alone: a name.
    if words.len() == 1
        && !ends_sentence
        && first.is_some_and(char::is_uppercase)
        && !ALONE.contains(&last.as_str())
    {
        return LineKind::Name;
    }
    LineKind::Speech
}

/// Words that carry little meaning: they count less when lines are
/// compared word by word.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "to", "of", "in", "on", "at", "for", "with", "from",
    "by", "is", "are", "was", "were", "be", "been", "am", "i", "you", "he", "she", "it", "we",
    "they", "me", "him", "her", "us", "them", "my", "your", "his", "its", "our", "their", "this",
    "that", "these", "those", "do", "does", "did", "have", "has", "had", "so", "as", "if", "not",
    "no", "s", "t", "m", "re", "ll", "d", "ve", "can", "will", "just", "there", "here", "what",
    "who", "how", "why", "where", "when", "oh", "well", "really", "very", "hello", "hi", "hey",
    "please", "um", "uh", "er", "okay", "ok", "then", "now", "any", "some",
];

/// Weight of a stopword against another word's 1.
const STOPWORD_WEIGHT: f32 = 0.25;

/// A line's words for comparison: lowercase, letters and digits, each once.
pub fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn weight(w: &str) -> f32 {
    if STOPWORDS.contains(&w) {
        STOPWORD_WEIGHT
    } else {
        1.0
    }
}

/// How much two lines share word for word, 0 to 1: the F1 of their words
/// (each line's from [`words`], sorted), stopwords counting less. A long
/// line that shares one word with a short one scores low.
pub fn overlap(a: &[String], b: &[String]) -> f32 {
    let total = |ws: &[String]| ws.iter().map(|w| weight(w)).sum::<f32>();
    let (ta, tb) = (total(a), total(b));
    if ta == 0.0 || tb == 0.0 {
        return 0.0;
    }
    let (mut i, mut j, mut shared) = (0, 0, 0.0f32);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                shared += weight(&a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    let (p, r) = (shared / ta, shared / tb);
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_is_told_from_what_is_not_said() {
        let cases = [
            ("Hello there, stranger!", LineKind::Speech),
            ("Who are you?", LineKind::Speech),
            ("I don't know...", LineKind::Speech),
            ("Yes", LineKind::Speech),
            ("BARRY Hello?", LineKind::Speech),
            ("JANET BENSON Barry, breakfast is ready!", LineKind::Speech),
            ("- Mary: Where were you?", LineKind::Speech),
            ("[door slams]", LineKind::Direction),
            ("(laughs)", LineKind::Direction),
            ("INT. BENSON HOUSE - DAY", LineKind::Direction),
            ("ANGLE ON: Barry's hand.", LineKind::Direction),
            ("CUT TO:", LineKind::Direction),
            ("Subtitles by explosiveskull", LineKind::Credit),
            ("www.opensubtitles.org", LineKind::Credit),
            ("♪ Fly me to the moon ♪", LineKind::Lyric),
            ("# Happy birthday to you #", LineKind::Lyric),
            ("BARRY", LineKind::Name),
            ("BARRY (CONT'D)", LineKind::Name),
            ("-- Mark Twain", LineKind::Name),
            ("Barry", LineKind::Name),
            ("the store on the corner.", LineKind::Fragment),
            ("I was going to tell you,", LineKind::Fragment),
            ("I was going to the", LineKind::Fragment),
        ];
        for (line, want) in cases {
            assert_eq!(classify(line), want, "{line:?}");
        }
    }

    #[test]
    fn the_words_said_lose_labels_and_directions() {
        assert_eq!(
            spoken("BARRY Hello?"),
            ("Hello?".into(), Some("BARRY".into()))
        );
        assert_eq!(
            spoken("- Mary: Where (sighs) were you?"),
            ("Where were you?".into(), Some("Mary".into()))
        );
        assert_eq!(spoken("I am fine."), ("I am fine.".into(), None));
        // A capital "I" or "OK" starting a line is not a label.
        assert_eq!(spoken("I think so."), ("I think so.".into(), None));
    }

    #[test]
    fn overlap_favours_lines_that_share_their_words() {
        let q = words("You look really tired.");
        let same = overlap(&q, &words("You look tired!"));
        let one_word = overlap(
            &q,
            &words("And then they all look up at the big sky over the hive."),
        );
        let none = overlap(&q, &words("Breakfast is ready."));
        assert!(same > 0.7, "{same}");
        assert!(one_word < 0.3, "{one_word}");
        assert_eq!(none, 0.0);
        assert_eq!(overlap(&[], &q), 0.0);
    }
}
