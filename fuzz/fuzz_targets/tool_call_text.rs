//! What a model writes when it puts a tool call in its text instead of the
//! tool-call field: the parser finds a call or nothing, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = llm::openai::call_in_text(text);
        let _ = llm::openai::first_json_object(text);
    }
});
