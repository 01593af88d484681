//! The arguments an MCP client (any model, any program) sends to
//! clip-selector's tools, read as each tool reads them, over a small
//! library: an answer or a refusal in words, never a panic, and a play
//! always names a clip of the library.
#![no_main]

use std::sync::{Arc, OnceLock};

use clip_selector::mcp::{FILMS_TOOL, PLAY_TOOL, SEARCH_TOOL, Tools};
use libfuzzer_sys::fuzz_target;
use library::{IndexDir, Library};
use wire::v1::{CatalogFilm, Clip, ClipKind, Film, IngestSummary};

const TOOLS: [&str; 4] = [SEARCH_TOOL, PLAY_TOOL, FILMS_TOOL, "no_such_tool"];

fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let root = std::env::temp_dir().join("cinema-fuzz-library");
        let line = |i: u32, text: &str, at: f64| Clip {
            id: format!("c{i}"),
            film_id: "f1".into(),
            film_title: "Midnight Train".into(),
            start_s: at,
            end_s: at + 2.0,
            caption: text.into(),
            kind: ClipKind::Dialogue as i32,
            line_index: i,
            ..Default::default()
        };
        let film = CatalogFilm {
            rel_path: "midnight-train.mp4".into(),
            film: Some(Film {
                id: "f1".into(),
                title: "Midnight Train".into(),
                duration_s: 30.0,
                clip_count: 3,
                ..Default::default()
            }),
            clips: vec![
                line(0, "Good evening. Is this seat taken?", 1.0),
                line(1, "Where are you going?", 4.0),
                line(2, "I am going home, to the city by the river.", 7.0),
            ],
            ..Default::default()
        };
        let lib = Library::from_catalog(
            root.clone(),
            &IndexDir::inside(&root),
            vec![film],
            IngestSummary::default(),
            "http://127.0.0.1:1",
            None,
        )
        .expect("a library of one film");
        Tools::new(Arc::new(lib), "nats://127.0.0.1:1")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((tool, json)) = data.split_first() else {
        return;
    };
    let Ok(serde_json::Value::Object(args)) = serde_json::from_slice(json) else {
        return;
    };
    let tool = TOOLS[*tool as usize % TOOLS.len()];
    match tools().read_call(tool, &args) {
        Ok(answer) if tool == PLAY_TOOL => {
            let id = answer["clip_id"].as_str().unwrap_or_default();
            assert!(["c0", "c1", "c2"].contains(&id), "{answer}");
        }
        Ok(_) => {}
        Err(message) => assert!(!message.is_empty()),
    }
});
