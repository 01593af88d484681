//! The retrieval director: offline, no model. For a visitor's line it
//! plays the line that followed the most similar line in a film; else a
//! clip that says something similar; else a generic reply; repeats only
//! when nothing else is left. Choices among near-equal options are fixed by
//! the seed, so a conversation replays the same way.

use std::time::Instant;

use bus::Bus;
use bus::endpoints;
use sha2::{Digest, Sha256};
use wire::v1::{Clip, SearchHit, SearchMode, SearchReply, SearchRequest};

use crate::Config;

/// What the retrieval director chose for one line, and how.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Best first; empty when the library has nothing at all.
    pub options: Vec<Clip>,
    pub mode: SearchMode,
    pub query: String,
    pub reasoning: &'static str,
    /// False when nothing in the library answered the line: the options are
    /// a generic reply (or repeats).
    pub fits: bool,
    pub search_ms: u32,
}

pub(crate) async fn search(
    bus: &Bus,
    config: &Config,
    query: &str,
    mode: SearchMode,
    exclude: &[String],
) -> Result<Vec<Clip>, bus::Error> {
    search_with_limit(bus, query, mode, config.options, exclude).await
}

/// `cinema.clips.search`: the library's best clips for `query`, none of `exclude`.
pub async fn search_with_limit(
    bus: &Bus,
    query: &str,
    mode: SearchMode,
    limit: u32,
    exclude: &[String],
) -> Result<Vec<Clip>, bus::Error> {
    Ok(search_hits(bus, query, mode, limit, exclude)
        .await?
        .into_iter()
        .filter_map(|h| h.clip)
        .collect())
}

/// `cinema.clips.search` with each hit's score and reason. The last of
/// `exclude` is taken as the clip played just before (the conversation so
/// far): in answer mode its film is preferred.
pub async fn search_hits(
    bus: &Bus,
    query: &str,
    mode: SearchMode,
    limit: u32,
    exclude: &[String],
) -> Result<Vec<SearchHit>, bus::Error> {
    let reply: SearchReply = bus
        .request(
            &endpoints::clips::SEARCH,
            &SearchRequest {
                query: query.to_string(),
                mode: mode as i32,
                limit,
                exclude_ids: exclude.to_vec(),
                previous_clip_id: exclude.last().cloned().unwrap_or_default(),
                ..Default::default()
            },
        )
        .await?;
    Ok(reply
        .hits
        .into_iter()
        .filter(|h| h.clip.is_some())
        .collect())
}

/// Which of the first `n` options to play: fixed by the seed, the turn and
/// the line, so replaying a conversation with the same seed (in any session)
/// makes the same choices.
pub fn pick(seed: Option<u64>, turn: u32, text: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let digest = Sha256::new()
        .chain_update(seed.unwrap_or(0).to_le_bytes())
        .chain_update(turn.to_le_bytes())
        .chain_update(text.trim().to_lowercase().as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(first) % n as u64) as usize
}

/// The retrieval director's choice for `text`: the clips whose line answers
/// it (the line before them in their film is like `text`), when the library
/// judges one likely enough ([`Config::min_fit`]); else nothing fits and it
/// is a generic reply ([`Config::fallback_queries`]); never a clip in
/// `played` unless nothing else is left. The film of the last clip played
/// is preferred. Deterministic for a given library.
pub async fn decide(
    bus: &Bus,
    config: &Config,
    text: &str,
    played: &[String],
) -> Result<Decision, bus::Error> {
    let started = Instant::now();
    let mut reasoning = "answered with the line that followed the most similar line in a film";
    let mut mode = SearchMode::Answer;
    let mut query = text.to_string();
    let hits = search_hits(bus, text, mode, config.options, played).await?;
    let fitting: Vec<Clip> = hits
        .iter()
        .filter(|h| h.score >= config.min_fit)
        .filter_map(|h| h.clip.clone())
        .collect();
    let fits = !fitting.is_empty();
    let mut options = fitting;
    if !fits {
        mode = SearchMode::Description;
        reasoning = "nothing in the library answers it well; a generic reply";
        for generic in &config.fallback_queries {
            options = search(bus, config, generic, mode, played).await?;
            if !options.is_empty() {
                query = generic.clone();
                break;
            }
        }
    }
    if options.is_empty() && !hits.is_empty() {
        mode = SearchMode::Answer;
        reasoning = "nothing answers it well and no generic reply is left; the closest line";
        options = hits.into_iter().filter_map(|h| h.clip).collect();
    }
    if options.is_empty() {
        mode = SearchMode::Description;
        reasoning = "no film line answers it; a clip that says something similar";
        options = search(bus, config, text, mode, played).await?;
    }
    if options.is_empty() {
        // The library is exhausted for this session: repeats are allowed now.
        reasoning = "every matching clip was already played; repeating one";
        options = search(bus, config, text, SearchMode::Answer, &[]).await?;
        if options.is_empty() {
            options = search(
                bus,
                config,
                &config.fallback_queries.join(" "),
                SearchMode::Description,
                &[],
            )
            .await?;
        }
    }
    Ok(Decision {
        options,
        mode,
        query,
        reasoning,
        fits,
        search_ms: started.elapsed().as_millis() as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_fixed_by_the_seed() {
        let lines = [
            "hello",
            "where is the station",
            "thank you",
            "goodbye",
            "why",
        ];
        let run = |seed| -> Vec<usize> {
            (0..40)
                .map(|turn| pick(seed, turn, lines[turn as usize % lines.len()], 3))
                .collect()
        };
        assert_eq!(run(Some(7)), run(Some(7)), "same seed, same choices");
        assert_ne!(run(Some(7)), run(Some(8)), "another seed, other choices");
        assert!(run(Some(7)).iter().all(|&i| i < 3));
        for i in 0..3 {
            assert!(
                run(Some(7)).contains(&i),
                "every option gets chosen sometimes"
            );
        }
        // Case and spaces of the line do not matter; one option leaves no choice.
        assert_eq!(pick(Some(1), 2, " Hello ", 3), pick(Some(1), 2, "hello", 3));
        assert_eq!(pick(Some(1), 2, "hello", 1), 0);
        assert_eq!(pick(Some(1), 2, "hello", 0), 0);
    }
}
