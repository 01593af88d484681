//! The Pis: presence (from the bucket pi-spawner writes), their capture
//! devices and audio input (requests to the Pi's spawner).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bus::endpoints;
use bus::subjects;
use serde::Deserialize;
use serde_json::{Value, json};
use wire::v1::{
    AudioDevices, AudioDevicesRequest, FilmList, ListFilmsRequest, PiPresence, SetAudioInput,
};

use crate::error::{ApiJson, AppError};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/pis", get(list))
        .route("/api/pis/{pi}/devices", get(devices))
        .route("/api/pis/{pi}/audio_input", post(set_audio_input))
}

/// How long a Pi's spawner may take to list its devices or store its input.
const PI_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the Pis page waits for clip-selector's media address.
const MEDIA_REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest audio input accepted (`alsa:…`, `wav:PATH`).
const MAX_INPUT_CHARS: usize = 512;

/// online: the heartbeat is younger than `stale_ms` (room-manager places
/// sessions there); stale: younger than twice that; offline: older, or gone
/// from the bucket.
pub fn presence_word(age_ms: i64, stale_ms: i64) -> &'static str {
    if age_ms < stale_ms {
        "online"
    } else if age_ms < 2 * stale_ms {
        "stale"
    } else {
        "offline"
    }
}

/// Every Pi in the presence bucket, plus the ones this gateway saw before
/// whose entries have expired since (offline).
async fn presences(st: &AppState) -> Result<Vec<PiPresence>, AppError> {
    let store = st.pis_bucket().await?;
    let keys = bus::kv_keys(&store).await?;
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        match bus::kv_get::<PiPresence>(&store, &key).await {
            Ok(Some((p, _))) => found.push(p),
            Ok(None) => {}
            Err(e) => tracing::debug!(pi = %key, error = %e, "Skipped a presence entry."),
        }
    }
    let mut seen = st.pis_seen.lock().unwrap_or_else(|p| p.into_inner());
    for p in &found {
        seen.insert(p.pi_id.clone(), p.clone());
    }
    Ok(seen.values().cloned().collect())
}

/// Why a Pi cannot fetch films, when clip-selector offers them at a
/// loopback address and the Pi is another host.
pub fn media_warning(media: &FilmList, pi_host: &str) -> Option<String> {
    let other_host = pi_host.is_empty() || media.host.is_empty() || pi_host != media.host;
    (media.media_loopback && other_host).then(|| {
        format!(
            "Films are offered at {}, a loopback address: this Pi (host {}) cannot fetch them. Set CINEMA_MEDIA_BASE_URL (compose) or CINEMA_CLIP_SELECTOR_MEDIA_BASE_URL to the hub's address as the Pis reach it.",
            media.media_base_url,
            if pi_host.is_empty() { "unknown" } else { pi_host }
        )
    })
}

fn pi_json(p: &PiPresence, stale_ms: i64, now_ms: i64, media: Option<&FilmList>) -> Value {
    let age = (now_ms - p.heartbeat_ms).max(0);
    json!({
        "media_warning": media.and_then(|m| media_warning(m, &p.host)),
        "pi_id": p.pi_id,
        "name": p.name,
        "host": p.host,
        "version": p.version,
        "status": presence_word(age, stale_ms),
        "heartbeat_ms": p.heartbeat_ms,
        "heartbeat_age_ms": age,
        "sessions": p.sessions,
        "max_sessions": p.max_sessions,
        "audio_input": p.audio_input,
        "audio_devices": p.audio_devices,
    })
}

/// `GET /api/pis`: `{pis: [{pi_id, status, heartbeat_age_ms, sessions,
/// audio_input, media_warning, …}]}`; `media_warning` says why a Pi cannot
/// fetch films (null when it can, or when clip-selector does not answer).
async fn list(State(st): State<AppState>) -> Result<Json<Value>, AppError> {
    let stale_ms = st.config.pi_stale_s as i64 * 1000;
    let now = wire::now_ms();
    let media: Option<FilmList> = st
        .bus
        .request_with_timeout(
            &endpoints::clips::FILMS,
            &ListFilmsRequest {},
            MEDIA_REQUEST_TIMEOUT,
        )
        .await
        .inspect_err(|e| tracing::debug!(error = %e, "No media address for the Pis page."))
        .ok();
    let pis: BTreeMap<String, Value> = presences(&st)
        .await?
        .iter()
        .map(|p| (p.pi_id.clone(), pi_json(p, stale_ms, now, media.as_ref())))
        .collect();
    Ok(Json(
        json!({ "pis": pis.into_values().collect::<Vec<_>>() }),
    ))
}

/// A Pi known by its presence; 404 otherwise.
async fn known_pi(st: &AppState, pi: &str) -> Result<(), AppError> {
    subjects::check_id("pi id", pi)?;
    let store = st.pis_bucket().await?;
    let present = bus::kv_get::<PiPresence>(&store, pi).await?.is_some();
    let seen = st
        .pis_seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(pi);
    if present || seen {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::NOT_FOUND,
            format!("no Pi {pi:?} has announced itself"),
        ))
    }
}

fn devices_json(d: &AudioDevices) -> Value {
    json!({
        "pi_id": d.pi_id,
        "devices": d.devices,
        "audio_input": d.audio_input,
        "error": d.error,
    })
}

/// `GET /api/pis/{pi}/devices`: `{pi_id, devices, audio_input, error}`.
async fn devices(
    State(st): State<AppState>,
    Path(pi): Path<String>,
) -> Result<Json<Value>, AppError> {
    known_pi(&st, &pi).await?;
    let reply: AudioDevices = st
        .bus
        .request_with_timeout(
            &endpoints::pi_devices(&pi),
            &AudioDevicesRequest {},
            PI_REQUEST_TIMEOUT,
        )
        .await?;
    Ok(Json(devices_json(&reply)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioInputBody {
    audio_input: String,
}

/// `POST /api/pis/{pi}/audio_input` `{"audio_input": "alsa:default"}`: stored
/// on the Pi; its running clients switch at once. Answers like `devices`.
async fn set_audio_input(
    State(st): State<AppState>,
    Path(pi): Path<String>,
    ApiJson(body): ApiJson<AudioInputBody>,
) -> Result<Json<Value>, AppError> {
    let input = body.audio_input.as_str();
    if !audio_input_form(input) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "audio_input {:?}: use none, stdin, alsa:DEVICE, wav:PATH or wav-loop:PATH",
                input.chars().take(80).collect::<String>()
            ),
        ));
    }
    if input.chars().count() > MAX_INPUT_CHARS {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("audio_input is longer than {MAX_INPUT_CHARS} characters"),
        ));
    }
    known_pi(&st, &pi).await?;
    let reply: AudioDevices = st
        .bus
        .request_with_timeout(
            &endpoints::pi_audio_input(&pi),
            &SetAudioInput {
                audio_input: input.to_string(),
            },
            PI_REQUEST_TIMEOUT,
        )
        .await?;
    Ok(Json(devices_json(&reply)))
}

/// The forms a Pi takes (the API document's pattern says the same):
/// `none`, `stdin`, `alsa` (each with an optional `:…`), or `wav:`/
/// `wav-loop:` and a path.
fn audio_input_form(input: &str) -> bool {
    let (kind, arg) = input.split_once(':').unwrap_or((input, ""));
    match kind {
        "none" | "stdin" | "alsa" => true,
        "wav" | "wav-loop" => input.contains(':') && !arg.trim().is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{media_warning, presence_word};
    use wire::v1::FilmList;

    #[test]
    fn a_loopback_media_url_is_a_warning_for_pis_on_other_hosts() {
        let media = |url: &str, loopback: bool| FilmList {
            media_base_url: url.into(),
            media_loopback: loopback,
            host: "hub".into(),
            ..FilmList::default()
        };
        let local = media("http://localhost:8766", true);
        let warning = media_warning(&local, "lobby-tv").unwrap();
        assert!(
            warning.contains("http://localhost:8766") && warning.contains("CINEMA_MEDIA_BASE_URL"),
            "{warning}"
        );
        assert!(media_warning(&local, "").is_some());
        // The simulated Pi on the hub's own machine fetches from loopback.
        assert_eq!(media_warning(&local, "hub"), None);
        assert_eq!(
            media_warning(&media("http://hub.lan:8766", false), "lobby-tv"),
            None
        );
    }

    #[test]
    fn presence_by_heartbeat_age() {
        for (age, want) in [
            (0, "online"),
            (29_999, "online"),
            (30_000, "stale"),
            (59_999, "stale"),
            (60_000, "offline"),
        ] {
            assert_eq!(presence_word(age, 30_000), want, "{age}");
        }
    }
}
