//! What the transcript says about the end of a turn. A line that stops
//! mid-phrase ("Tell me about", "Um.", "I want to", "and the…") is not a
//! whole turn, however long the visitor paused; a statement ("Hello
//! television.", "I saw a film last week.") often leads into a question; a
//! question or an exclamation is a whole turn. The director answers a
//! whole turn at once and holds the others a while ([`Hold`]); a line that
//! follows in that time is joined to them and answered as one.

/// How long a line is held for what may follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Stops mid-phrase: `join_within_ms`.
    Open,
    /// A statement: `statement_wait_ms`.
    Statement,
    /// A question or an exclamation: answered at once.
    Whole,
}

/// How the director holds `text`. An exclamation is held as a statement
/// ("Good evening!" often leads into a question).
pub fn hold(text: &str) -> Hold {
    let t = text.trim();
    if ends_mid_phrase(t) {
        Hold::Open
    } else if t.is_empty() || t.ends_with('?') {
        Hold::Whole
    } else {
        Hold::Statement
    }
}

/// Words a finished English sentence does not end on: articles, the
/// commonest prepositions and conjunctions, fillers, possessives, and
/// auxiliaries and pronouns that want a verb or object after them.
const OPEN_ENDINGS: &[&str] = &[
    // Articles and determiners.
    "a", "an", "the", "my", "your", "his", "her", "our", "their", "its", "this", "some", "every",
    // Prepositions.
    "about", "of", "to", "for", "with", "in", "on", "at", "from", "into", "by", "like", "than",
    "as", "over", "under", "between", "through", "without", // Conjunctions.
    "and", "but", "or", "nor", "because", "if", "that", "when", "while", "although", "since",
    "unless", "whether", "so", "then", // Fillers.
    "um", "umm", "uh", "uhh", "er", "erm", "hmm", "mm", "ah", "well",
    // Wanting a verb or an object.
    "i", "we", "you", "they", "is", "are", "was", "were", "am", "be", "can", "could", "would",
    "should", "will", "shall", "do", "does", "did", "have", "has", "want", "wanna", "gonna",
    "what's", "where's", "let's",
];

/// Whether `text` (a transcript) stops mid-phrase: it trails off ("…",
/// "-", ","), or its last word is one a sentence does not end on.
pub fn ends_mid_phrase(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() {
        return false;
    }
    if t.ends_with("...") || t.ends_with('…') || t.ends_with(',') || t.ends_with('-') {
        return true;
    }
    let words: Vec<&str> = t.split_whitespace().collect();
    let last = words
        .last()
        .copied()
        .unwrap_or("")
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
        .to_lowercase()
        .replace('’', "'");
    let open = OPEN_ENDINGS.contains(&last.as_str());
    // A question or an exclamation is a whole turn whatever it ends on
    // ("What are you thinking of?"), unless it is only the first words of
    // one, which Whisper punctuates too ("Can you?", "Where is?").
    if t.ends_with('?') || t.ends_with('!') {
        return open && words.len() <= 3;
    }
    open
}

/// Two lines of one turn as one: a line that stopped mid-phrase runs on
/// into the next; a statement stays a sentence of its own.
pub fn join(first: &str, then: &str) -> String {
    let open = ends_mid_phrase(first);
    let first = if open {
        first.trim().trim_end_matches(['.', '…']).trim_end()
    } else {
        first.trim()
    };
    let then = then.trim();
    if !open && !first.is_empty() && !then.is_empty() {
        return format!("{first} {then}");
    }
    match (first.is_empty(), then.is_empty()) {
        (true, _) => then.to_string(),
        (_, true) => first.to_string(),
        _ => {
            // "Tell me about" + "The ocean." reads "Tell me about the ocean."
            let mut chars = then.chars();
            let lowered = match chars.next() {
                Some(c) if !then.starts_with("I ") && !then.starts_with("I'") => {
                    c.to_lowercase().chain(chars).collect::<String>()
                }
                _ => then.to_string(),
            };
            format!("{first} {lowered}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_that_stop_mid_phrase_are_told_apart() {
        for open in [
            "Tell me about",
            "Tell me about.",
            "Um.",
            "So,",
            "I want to",
            "Hello, and",
            "Where is the...",
            "The story of the…",
            "Uh",
            "Can you?",
            "Where is?",
        ] {
            assert!(ends_mid_phrase(open), "{open:?} is open");
        }
        for whole in [
            "Tell me a story about the ocean.",
            "Hello television.",
            "What is the meaning of life?",
            "Where did you go last night?",
            "What are you thinking of?",
            "Stop!",
            "",
            "   ",
        ] {
            assert!(!ends_mid_phrase(whole), "{whole:?} is whole");
        }
    }

    #[test]
    fn questions_are_whole_statements_may_lead_on() {
        assert_eq!(hold("What is your name?"), Hold::Whole);
        assert_eq!(hold("Good evening!"), Hold::Statement);
        assert_eq!(hold("Can you?"), Hold::Open);
        assert_eq!(hold("Where is?"), Hold::Open);
        assert_eq!(hold("Hello television."), Hold::Statement);
        assert_eq!(hold("I saw a film last week"), Hold::Statement);
        assert_eq!(hold("Tell me about"), Hold::Open);
        assert_eq!(hold("Um."), Hold::Open);
    }

    #[test]
    fn joined_lines_read_as_one() {
        assert_eq!(
            join("Tell me about.", "The ocean."),
            "Tell me about the ocean."
        );
        assert_eq!(join("Um.", "What is your name?"), "Um what is your name?");
        assert_eq!(join("So,", "I wonder."), "So, I wonder.");
        assert_eq!(
            join("I saw a film.", "Do you know it?"),
            "I saw a film. Do you know it?"
        );
        assert_eq!(join("", "Hello."), "Hello.");
        assert_eq!(join("Hello", " "), "Hello");
    }
}
