//! The director's tool contract, written once: the tools' names,
//! descriptions and argument schemas, the option a search returns for each
//! clip, and how a played clip is shown (`[VIDEO: film | "line"]`, the
//! first generation's form). The llm service offers these tools to an
//! OpenAI-compatible model; clip-selector serves them over MCP with what an
//! outside client must add (the session, the first generation's file and
//! times).

use serde_json::{Map, Value, json};
use wire::v1::Clip;

/// Search the library: `search_video_clips(description, limit)`.
pub const SEARCH_TOOL: &str = "search_video_clips";
/// Play one option: `play_video_by_params(clip_id, reasoning)`.
pub const PLAY_TOOL: &str = "play_video_by_params";
/// List the films (MCP only): `list_films()`.
pub const FILMS_TOOL: &str = "list_films";

/// Options a search gives when the caller names no limit, and the most it
/// gives.
pub const DEFAULT_LIMIT: u32 = 5;
pub const MAX_LIMIT: u32 = 20;

pub const SEARCH_DESCRIPTION: &str = "Search the film library for clips whose spoken line or \
     picture matches a description. Returns options with clip_id, caption, description, film, \
     start, end and duration.";

pub const PLAY_DESCRIPTION: &str = "Play one clip on the television as your answer. Give the \
     clip_id of one of the options, and your reasoning.";

/// The arguments of [`SEARCH_TOOL`], as JSON Schema.
pub fn search_parameters() -> Value {
    json!({
        "type": "object",
        "properties": {
            "description": {"type": "string", "description": "What the clip should say or show."},
            "limit": {
                "type": "integer",
                "description": format!("How many options (default {DEFAULT_LIMIT})."),
                "minimum": 1,
                "maximum": MAX_LIMIT
            }
        },
        "required": ["description"]
    })
}

/// The arguments of [`PLAY_TOOL`], as JSON Schema.
pub fn play_parameters() -> Value {
    json!({
        "type": "object",
        "properties": {
            "clip_id": {"type": "string", "description": "The clip_id of the chosen option."},
            "reasoning": {"type": "string", "description": "Why this clip answers the visitor."}
        },
        "required": ["clip_id", "reasoning"]
    })
}

/// How a played clip is shown in a conversation: `[VIDEO: film | "line"]`.
pub fn display(clip: &Clip) -> String {
    format!("[VIDEO: {} | \"{}\"]", clip.film_title, clip.caption)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One search result as the caller sees it: the first generation's fields,
/// by clip id, and the line the clip answers (`follows_line`).
pub fn option(clip: &Clip) -> Map<String, Value> {
    let value = json!({
        "clip_id": clip.id,
        "caption": clip.caption,
        "description": display(clip),
        "film": clip.film_title,
        "start": round2(clip.start_s),
        "end": round2(clip.end_s),
        "duration": round2(clip.end_s - clip.start_s),
        "follows_line": clip.cue,
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// An answer-mode option: [`option`] with how likely the library judges it
/// to answer (`fit`, 0 to 1) and why it matched (`why`: the cue, the reply,
/// the film), so a model can weigh it.
pub fn answer_option(clip: &Clip, fit: f32, why: &str) -> Map<String, Value> {
    let mut map = option(clip);
    map.insert("fit".into(), json!(round2(f64::from(fit))));
    map.insert("why".into(), json!(why));
    map
}

/// A search's answer: `{"options": [...]}`.
pub fn options(options: impl IntoIterator<Item = Map<String, Value>>) -> Value {
    json!({ "options": options.into_iter().map(Value::Object).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_option_has_the_first_generations_fields() {
        let clip = Clip {
            id: "c1".into(),
            film_title: "Rain".into(),
            caption: "line a1".into(),
            cue: "the cue".into(),
            start_s: 1.234,
            end_s: 3.0,
            ..Default::default()
        };
        let o = Value::Object(option(&clip));
        assert_eq!(o["description"], "[VIDEO: Rain | \"line a1\"]");
        assert_eq!(o["start"], 1.23);
        assert_eq!(o["duration"], 1.77);
        assert_eq!(o["follows_line"], "the cue");
        let schema = search_parameters();
        assert_eq!(schema["properties"]["limit"]["maximum"], MAX_LIMIT);
        assert_eq!(
            play_parameters()["required"],
            json!(["clip_id", "reasoning"])
        );
    }
}
