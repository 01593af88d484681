//! Talking from the browser: a web page is a session's TV.
//!
//! A browser session (`POST /api/connect {"browser": true}`) has no Pi. When
//! the page opens `GET /api/sessions/{id}/talk` as a WebSocket, the gateway
//! becomes the session's client on the bus, exactly where a pi-client would
//! be: it subscribes to the session's play commands, joins through
//! room-manager with the session's token (so the director greets once),
//! resolves each clip id with `cinema.clips.get` and tells the page what to
//! play (the film's media URL and the clip's range), and publishes the
//! `PlaybackEvent`s the page reports. The page's microphone arrives as
//! binary frames of 16 kHz mono s16le and goes through the same
//! [`voice::Ears`] as a Pi's (earshot VAD, endpointing, 20 ms level frames,
//! utterances on the work queue), behind the same echo gate: closed from
//! the play command until the page reports the clip's end plus
//! `echo_tail_ms`.
//!
//! Wire protocol on the socket:
//! - page → gateway, binary: PCM, 16 kHz mono s16le, at most
//!   [`MAX_FRAME_BYTES`] a frame, an even number of bytes;
//! - page → gateway, text (JSON): `{"type":"playback","command_id":…,
//!   "state":"started"|"finished"|"failed"|"interrupted","error":…}` and
//!   `{"type":"mic","on":false}` (the visitor muted: speech in progress ends);
//! - gateway → page, text (JSON): `joined`, `play` (`command_id`, `clip_id`,
//!   `url`, `start_s`, `end_s`, `caption`, `film_title`, `greeting`),
//!   `listening` (`open`: whether speech can become an utterance now),
//!   `utterance` (`utterance_id`, `ms`), `ended` (`reason`), `error`
//!   (`message`, followed by a close frame with the same reason).

use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use bus::endpoints;
use bus::subjects::{self, SessionEvent};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::{
    GetClipReply, GetClipRequest, JoinRequest, PlayCommand, PlaybackEvent, PlaybackState, Session,
    SessionEnded, SessionReply, SessionState,
};

use crate::error::AppError;
use crate::state::AppState;

/// Largest audio frame accepted: one second of 16 kHz s16le.
pub const MAX_FRAME_BYTES: usize = 32_000;
/// Largest WebSocket message read at all (bigger ones are refused by the
/// WebSocket layer before they are buffered).
const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Largest text (control) message.
const MAX_TEXT_BYTES: usize = 4_096;
/// The capture device named in the utterances of a browser.
pub const DEVICE: &str = "browser";
/// A page that has not reported a clip's end this long after the clip
/// should have ended is taken to have lost it (the ears open again).
const CLIP_GRACE: Duration = Duration::from_secs(15);
/// How long a refused page has to acknowledge the close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Audio may arrive this much faster than real time on average (a
/// microphone cannot; a flood would only burn the gateway's CPU)...
const MAX_SPEED: f64 = 2.0;
/// ...after a burst of this many seconds (a network stall catching up).
const BURST_S: f64 = 5.0;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/sessions/{id}/talk", get(talk))
}

/// `GET /api/sessions/{id}/talk` (WebSocket): the page becomes the TV of a
/// browser session. The token is checked by the auth middleware
/// (`?token=` or `Authorization: Bearer`); the session must exist, be a
/// browser session and be live. A page from another origin (cross-site
/// WebSocket) is refused unless `cors_origins` allows it.
async fn talk(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin = origin.to_str().unwrap_or_default();
        let same = host.is_some_and(|h| {
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(h))
        });
        if !same && !st.config.cors_origins.iter().any(|o| o == origin) {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "pages from {origin:?} may not talk here (not this gateway's origin, nor in cors_origins)"
                ),
            ));
        }
    }
    let session = st.session(&id).await?;
    if !session.browser {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            format!(
                "session {id} plays on Pi {:?}; only a browser session (POST /api/connect {{\"browser\": true}}) can be talked to",
                session.pi_id
            ),
        ));
    }
    if matches!(session.state(), SessionState::Ended | SessionState::Failed) {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            format!("session {id} has ended"),
        ));
    }
    let ws = ws.map_err(|r| {
        AppError::new(
            r.status(),
            format!("{}: open this endpoint as a WebSocket", r.body_text()),
        )
    })?;
    let slot = st.talk_slot()?;
    Ok(ws
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            st.metrics.talk_socket(1);
            serve(st.clone(), session, socket).await;
            st.metrics.talk_socket(-1);
            drop(slot);
        }))
}

/// Why a message from the page is refused: a close code and the reason.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub code: u16,
    pub reason: String,
}

/// The samples of one binary frame.
pub fn pcm_of(bytes: &[u8]) -> Result<Vec<i16>, Refusal> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(Refusal {
            code: close_code::SIZE,
            reason: format!(
                "an audio frame is at most {MAX_FRAME_BYTES} bytes (1 s of 16 kHz s16le), not {}",
                bytes.len()
            ),
        });
    }
    if bytes.len() & 1 == 1 {
        return Err(Refusal {
            code: close_code::INVALID,
            reason: format!(
                "audio frames are 16-bit samples (s16le): {} bytes is odd",
                bytes.len()
            ),
        });
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

/// A control message from the page.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromPage {
    /// What became of the clip the page was told to play.
    Playback {
        command_id: String,
        state: PageState,
        #[serde(default)]
        error: String,
    },
    /// The microphone was switched off (or on).
    Mic { on: bool },
}

#[derive(Debug, Deserialize, PartialEq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum PageState {
    Started,
    Finished,
    Failed,
    Interrupted,
}

/// The control message of one text frame.
pub fn control_of(text: &str) -> Result<FromPage, Refusal> {
    let unsupported = |why: String| Refusal {
        code: close_code::UNSUPPORTED,
        reason: format!(
            "expected binary audio (16 kHz mono s16le) or a JSON control message: {why}"
        ),
    };
    if text.len() > MAX_TEXT_BYTES {
        return Err(unsupported(format!(
            "a control message is at most {MAX_TEXT_BYTES} bytes"
        )));
    }
    serde_json::from_str(text).map_err(|e| unsupported(e.to_string()))
}

/// The clip the page is playing (or loading).
struct Current {
    cmd: PlayCommand,
    start_s: f64,
    end_s: f64,
    started: bool,
    /// The page is taken to have lost the clip after this.
    deadline: Instant,
}

/// Why the socket's session loop stopped.
enum Leave {
    /// The page went away (or its connection broke).
    Gone,
    /// Close with this code and reason (after telling the page why).
    Close(u16, String),
}

async fn serve(st: AppState, session: Session, mut socket: WebSocket) {
    let sid = session.id.clone();
    let taken = st.take_over_talk(&sid);
    let leave = match Talk::start(&st, &session, &mut socket).await {
        Ok(mut talk) => {
            let leave = talk.run(&mut socket, &taken.stop).await;
            talk.leave().await;
            leave
        }
        Err(leave) => leave,
    };
    if let Leave::Close(code, reason) = leave {
        let _ = send_json(&mut socket, json!({ "type": "error", "message": reason })).await;
        let reason: String = reason.chars().take(120).collect();
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
        // The closing handshake: read (and drop) what the page still sends
        // until its close frame, so the connection is not reset under it
        // before it has read why.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(m)) = socket.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    st.release_talk(&sid, &taken);
    tracing::info!(session = %sid, "The browser's socket closed.");
}

async fn send_json(socket: &mut WebSocket, value: serde_json::Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(value.to_string().into())).await
}

/// The gateway as one browser session's client.
struct Talk {
    st: AppState,
    sid: String,
    plays: bus::async_nats::Subscriber,
    ended: bus::async_nats::Subscriber,
    ears: voice::Ears<voice::Detector>,
    gate: voice::Gate,
    tail: Duration,
    current: Option<Current>,
    listening: Option<bool>,
    /// Samples the page may still send now (see [`MAX_SPEED`]).
    allowance: f64,
    allowance_at: Instant,
}

impl Talk {
    /// Subscribes to the session's commands, then joins (room-manager
    /// checks the token and announces the join: the director greets).
    async fn start(
        st: &AppState,
        session: &Session,
        socket: &mut WebSocket,
    ) -> Result<Talk, Leave> {
        let sid = session.id.clone();
        let bus = st.bus.clone();
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!(session = %sid, error = %e, "Cannot {what} for a browser session.");
            Leave::Close(close_code::ERROR, format!("cannot {what}: {e}"))
        };
        let plays = bus
            .client()
            .subscribe(subjects::pi_session(
                subjects::BROWSER,
                &sid,
                SessionEvent::Play,
            ))
            .await
            .map_err(|e| unavailable("subscribe to play commands", &e))?;
        let ended = bus
            .client()
            .subscribe(subjects::session(&sid, SessionEvent::Ended))
            .await
            .map_err(|e| unavailable("subscribe to the session's end", &e))?;
        let join = JoinRequest {
            session_id: sid.clone(),
            token: session.token.clone(),
            pi_id: subjects::BROWSER.into(),
            pid: 0,
        };
        let joined: Result<SessionReply, bus::Error> =
            bus.request(&endpoints::rooms::JOIN, &join).await;
        if let Err(e) = joined {
            let code = match e.remote_code() {
                Some(409) => close_code::POLICY,
                _ => close_code::ERROR,
            };
            tracing::warn!(session = %sid, error = %e, "A browser could not join its session.");
            return Err(Leave::Close(code, format!("cannot join the session: {e}")));
        }
        let tail = Duration::from_millis(st.config.echo_tail_ms.into());
        tracing::info!(session = %sid, "A browser joined its session.");
        send_json(
            socket,
            json!({ "type": "joined", "session_id": sid, "echo_tail_ms": st.config.echo_tail_ms }),
        )
        .await
        .map_err(|_| Leave::Gone)?;
        Ok(Talk {
            ears: voice::Ears::new(
                bus,
                subjects::BROWSER,
                &sid,
                DEVICE,
                voice::vad::Params {
                    // Checked when the configuration was read.
                    turn: st.config.turn.params().unwrap_or_default(),
                    ..voice::vad::Params::default()
                },
                true,
                (&st.config.turn.runtime(), &st.config.turn.model()),
            ),
            st: st.clone(),
            sid,
            plays,
            ended,
            gate: voice::Gate::default(),
            tail,
            current: None,
            listening: None,
            allowance: BURST_S * f64::from(voice::vad::RATE),
            allowance_at: Instant::now(),
        })
    }

    async fn run(&mut self, socket: &mut WebSocket, taken: &CancellationToken) -> Leave {
        let closing = self.st.hub.closing();
        loop {
            if let Err(leave) = self.tell_listening(socket).await {
                return leave;
            }
            let deadline = self.current.as_ref().map(|c| c.deadline);
            tokio::select! {
                () = taken.cancelled() => {
                    return Leave::Close(close_code::POLICY, "another page took over this session".into());
                }
                () = closing.cancelled() => {
                    return Leave::Close(close_code::AWAY, "the gateway is shutting down".into());
                }
                msg = self.ended.next() => {
                    let reason = msg
                        .and_then(|m| bus::decode_message::<SessionEnded>(&m).ok())
                        .map(|e| e.reason)
                        .unwrap_or_default();
                    let _ = send_json(socket, json!({ "type": "ended", "reason": reason })).await;
                    let _ = socket.send(Message::Close(Some(CloseFrame {
                        code: close_code::NORMAL,
                        reason: "the session ended".into(),
                    }))).await;
                    return Leave::Gone;
                }
                msg = self.plays.next() => {
                    let Some(msg) = msg else {
                        return Leave::Close(close_code::ERROR, "the bus subscription ended".into());
                    };
                    match bus::decode_message::<PlayCommand>(&msg) {
                        Ok(cmd) if cmd.session_id == self.sid => {
                            if let Err(leave) = self.play(socket, cmd).await {
                                return leave;
                            }
                        }
                        Ok(cmd) => tracing::warn!(session = %self.sid, other = %cmd.session_id, "Ignored a play command for another session."),
                        Err(e) => tracing::warn!(session = %self.sid, error = %e, "Ignored a malformed play command."),
                    }
                }
                () = sleep_until(deadline) => {
                    if let Some(c) = self.current.take() {
                        tracing::warn!(session = %self.sid, clip = %c.cmd.clip_id, "The page never reported the clip's end.");
                        report(&self.st.bus, &self.sid, &c, PlaybackState::Failed, "the page did not report the clip's end").await;
                        self.gate.open_after(self.tail);
                    }
                }
                frame = socket.recv() => {
                    let frame = match frame {
                        None | Some(Ok(Message::Close(_))) => return Leave::Gone,
                        Some(Err(e)) => {
                            tracing::info!(session = %self.sid, error = %e, "The browser's socket failed.");
                            return Leave::Gone;
                        }
                        Some(Ok(f)) => f,
                    };
                    let result = match frame {
                        Message::Binary(bytes) => match pcm_of(&bytes) {
                            Ok(pcm) if self.within_speed(pcm.len()) => self.hear(socket, &pcm).await,
                            Ok(_) => Err(Leave::Close(
                                close_code::POLICY,
                                "audio arrives faster than real time: send 16 kHz mono s16le as it is captured".into(),
                            )),
                            Err(r) => Err(Leave::Close(r.code, r.reason)),
                        },
                        Message::Text(text) => match control_of(text.as_str()) {
                            Ok(c) => self.control(socket, c).await,
                            Err(r) => Err(Leave::Close(r.code, r.reason)),
                        },
                        _ => Ok(()), // pings are answered by the socket itself
                    };
                    if let Err(leave) = result {
                        if let Leave::Close(_, reason) = &leave {
                            tracing::info!(session = %self.sid, %reason, "Refused a browser's message.");
                        }
                        return leave;
                    }
                }
            }
        }
    }

    /// Tells the page when the ears open or close.
    async fn tell_listening(&mut self, socket: &mut WebSocket) -> Result<(), Leave> {
        let open = self.gate.is_open();
        if self.listening != Some(open) {
            self.listening = Some(open);
            send_json(socket, json!({ "type": "listening", "open": open }))
                .await
                .map_err(|_| Leave::Gone)?;
        }
        Ok(())
    }

    /// Whether `samples` more are within the page's allowance.
    fn within_speed(&mut self, samples: usize) -> bool {
        let rate = f64::from(voice::vad::RATE);
        let now = Instant::now();
        let earned = now.duration_since(self.allowance_at).as_secs_f64() * rate * MAX_SPEED;
        self.allowance = (self.allowance + earned).min(BURST_S * rate) - samples as f64;
        self.allowance_at = now;
        self.allowance >= 0.0
    }

    async fn hear(&mut self, socket: &mut WebSocket, pcm: &[i16]) -> Result<(), Leave> {
        let heard = self.ears.hear(pcm, self.gate.is_open()).await;
        for u in heard.utterances {
            send_json(
                socket,
                json!({ "type": "utterance", "utterance_id": u.utterance_id, "ms": u.ms }),
            )
            .await
            .map_err(|_| Leave::Gone)?;
        }
        Ok(())
    }

    async fn control(&mut self, socket: &mut WebSocket, msg: FromPage) -> Result<(), Leave> {
        match msg {
            FromPage::Mic { on: false } => {
                // Whatever was being said is finished now.
                self.hear(socket, &vec![0; voice::vad::RATE as usize]).await
            }
            FromPage::Mic { on: true } => Ok(()),
            FromPage::Playback {
                command_id,
                state,
                error,
            } => {
                let Some(c) = self
                    .current
                    .as_mut()
                    .filter(|c| c.cmd.command_id == command_id)
                else {
                    tracing::debug!(session = %self.sid, command = %command_id, "Ignored a report on a clip that is not playing.");
                    return Ok(());
                };
                if state == PageState::Started {
                    if !c.started {
                        c.started = true;
                        if let Some(c) = self.current.as_ref() {
                            report(&self.st.bus, &self.sid, c, PlaybackState::Started, "").await;
                        }
                    }
                    return Ok(());
                }
                let Some(c) = self.current.take() else {
                    return Ok(());
                };
                let st = match state {
                    PageState::Finished => PlaybackState::Finished,
                    PageState::Interrupted => PlaybackState::Interrupted,
                    _ => PlaybackState::Failed,
                };
                report(&self.st.bus, &self.sid, &c, st, &error).await;
                // The room's echo dies down before the ears open again.
                self.gate.open_after(self.tail);
                Ok(())
            }
        }
    }

    /// A play command: deaf from now, resolve the clip, tell the page.
    async fn play(&mut self, socket: &mut WebSocket, cmd: PlayCommand) -> Result<(), Leave> {
        if let Some(prev) = self.current.take() {
            report(
                &self.st.bus,
                &self.sid,
                &prev,
                PlaybackState::Interrupted,
                "",
            )
            .await;
        }
        self.gate.close();
        self.tell_listening(socket).await?;
        let reply: Result<GetClipReply, bus::Error> = self
            .st
            .bus
            .request_with_timeout(
                &endpoints::clips::GET,
                &GetClipRequest {
                    clip_id: cmd.clip_id.clone(),
                },
                Duration::from_secs(3),
            )
            .await;
        let (clip, url) = match reply {
            Ok(GetClipReply {
                clip: Some(clip),
                media_url,
                ..
            }) if !media_url.is_empty() => (clip, media_url),
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => format!("clip {:?} has no media", cmd.clip_id),
                };
                tracing::warn!(session = %self.sid, clip = %cmd.clip_id, error = %why, "Cannot resolve a clip.");
                let failed = Current {
                    cmd,
                    start_s: 0.0,
                    end_s: 0.0,
                    started: false,
                    deadline: Instant::now(),
                };
                report(
                    &self.st.bus,
                    &self.sid,
                    &failed,
                    PlaybackState::Failed,
                    &why,
                )
                .await;
                self.gate.open_after(Duration::ZERO);
                return Ok(());
            }
        };
        // Bounded whatever the library says (NaN included).
        let length = Duration::try_from_secs_f64((clip.end_s - clip.start_s).clamp(0.0, 3600.0))
            .unwrap_or(Duration::ZERO);
        send_json(
            socket,
            json!({
                "type": "play",
                "command_id": cmd.command_id,
                "clip_id": cmd.clip_id,
                "greeting": cmd.greeting,
                "url": url,
                "start_s": clip.start_s,
                "end_s": clip.end_s,
                "caption": clip.caption,
                "film_title": clip.film_title,
            }),
        )
        .await
        .map_err(|_| Leave::Gone)?;
        tracing::info!(session = %self.sid, clip = %clip.id, start = clip.start_s, end = clip.end_s, "Playing in the browser.");
        self.current = Some(Current {
            cmd,
            start_s: clip.start_s,
            end_s: clip.end_s,
            started: false,
            deadline: Instant::now() + length + CLIP_GRACE,
        });
        Ok(())
    }

    /// The page left: a clip it was playing is cut short.
    async fn leave(mut self) {
        if let Some(c) = self.current.take() {
            report(
                &self.st.bus,
                &self.sid,
                &c,
                PlaybackState::Interrupted,
                "the page left",
            )
            .await;
        }
        let _ = self.plays.unsubscribe().await;
        let _ = self.ended.unsubscribe().await;
    }
}

/// Publishes what became of a clip, with a message id per command and state
/// (as pi-client does), so a repeated report is deduplicated.
async fn report(bus: &bus::Bus, sid: &str, c: &Current, state: PlaybackState, error: &str) {
    let ev = PlaybackEvent {
        session_id: sid.to_string(),
        command_id: c.cmd.command_id.clone(),
        clip_id: c.cmd.clip_id.clone(),
        state: state as i32,
        start_s: c.start_s,
        end_s: c.end_s,
        error: error.chars().take(500).collect(),
        at_ms: now_ms(),
    };
    let id = bus::ids::playback(&c.cmd.command_id, state);
    if let Err(e) = bus
        .publish_durable(
            subjects::pi_session(subjects::BROWSER, sid, SessionEvent::Playback),
            &ev,
            &id,
        )
        .await
    {
        tracing::warn!(session = %sid, error = %e, "Cannot report playback.");
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_frames_are_even_and_bounded() {
        assert_eq!(pcm_of(&[1, 0, 0xff, 0xff]), Ok(vec![1, -1]));
        assert_eq!(pcm_of(&[]), Ok(vec![]));
        let odd = pcm_of(&[1, 2, 3]).unwrap_err();
        assert_eq!(odd.code, close_code::INVALID);
        assert!(odd.reason.contains("odd"), "{}", odd.reason);
        let big = pcm_of(&vec![0; MAX_FRAME_BYTES + 2]).unwrap_err();
        assert_eq!(big.code, close_code::SIZE);
        assert!(pcm_of(&vec![0; MAX_FRAME_BYTES]).is_ok());
    }

    #[test]
    fn control_messages_parse_or_are_refused() {
        assert_eq!(
            control_of(r#"{"type":"playback","command_id":"c1","state":"finished"}"#),
            Ok(FromPage::Playback {
                command_id: "c1".into(),
                state: PageState::Finished,
                error: String::new()
            })
        );
        assert_eq!(
            control_of(r#"{"type":"mic","on":false}"#),
            Ok(FromPage::Mic { on: false })
        );
        for bad in [
            "hello",
            "",
            r#"{"type":"dance"}"#,
            r#"{"type":"playback","command_id":"c1","state":"exploded"}"#,
        ] {
            let r = control_of(bad).unwrap_err();
            assert_eq!(r.code, close_code::UNSUPPORTED, "{bad}");
            assert!(r.reason.contains("expected binary audio"), "{}", r.reason);
        }
        assert!(control_of(&format!("\"{}\"", "x".repeat(5000))).is_err());
    }
}
