//! room-manager: the session lifecycle. Creates a session (id + signed,
//! expiring token) in the local backend or as a Daily.co room, asks the
//! chosen Pi's spawner to start a client, accepts the client's join (token
//! checked) and only then announces it, ends sessions on request, on expiry
//! (idle, maximum length) and when their Pi goes away, and cleans up ended
//! sessions' state after a retention period.

pub mod daily;
mod deliver;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::async_nats::jetstream::kv::Store;
use bus::endpoints;
use bus::service::{self as svc, Reject};
use bus::subjects::{self, SessionEvent};
use bus::{Bus, kv_cas, kv_get, names};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::{
    CleanupReply, CleanupRequest, ClientJoined, CreateSessionRequest, FailSessionRequest,
    JoinRequest, ListSessionsRequest, PiPresence, PurgeReply, PurgeRequest, Session,
    SessionCreated, SessionEnded, SessionList, SessionRef, SessionReply, SessionState, SpawnReply,
    SpawnRequest, StopClientReply, StopClientRequest,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// A Pi whose presence is older than this is offline: no new sessions,
    /// and its sessions end.
    pub pi_stale_s: u64,
    /// How long to wait for a spawner to start a client.
    pub spawn_timeout_s: u64,
    /// A live session with no transcript or playback for this long ends.
    pub idle_timeout_s: u64,
    /// A visitor who has said nothing for this long after the last clip
    /// ended is invited back with one clip ("Hello? Are you still there?",
    /// the director's `invite_query`); 0: never.
    pub invite_after_s: u64,
    /// Still nothing this long after the invite's clip ended: the director
    /// says goodbye with a clip, and when it has played the session ends
    /// with that reason; 0: never.
    pub goodbye_after_s: u64,
    /// No session lasts longer than this (also the token's and room's expiry).
    pub max_length_s: u64,
    /// Ended sessions' state is removed after this long.
    pub retention_s: u64,
    /// How often expiry and cleanup run.
    pub sweep_interval_s: u64,
    /// Token signing key; empty means one shared by all replicas through the
    /// secrets bucket (made on first start).
    pub token_secret: String,
    /// `DAILY_API_KEY`: when set, sessions get a Daily.co room.
    pub daily_api_key: String,
    /// `DAILY_API_URL`.
    pub daily_api_url: String,
    /// A play command the Pi has not taken this long after it was made (its
    /// link is down) is reported as expired instead of played late.
    pub play_expiry_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            pi_stale_s: 30,
            spawn_timeout_s: 10,
            idle_timeout_s: 600,
            invite_after_s: 20,
            goodbye_after_s: 40,
            max_length_s: 3600,
            retention_s: 24 * 3600,
            sweep_interval_s: 10,
            token_secret: String::new(),
            daily_api_key: String::new(),
            daily_api_url: "https://api.daily.co/v1".into(),
            play_expiry_ms: 30_000,
        }
    }
}

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_ROOM_MANAGER_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = &[
        ("DAILY_API_KEY", "daily_api_key"),
        ("DAILY_API_URL", "daily_api_url"),
    ];
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
    fn validate(&self) -> Result<(), String> {
        if self.max_length_s == 0
            || self.idle_timeout_s == 0
            || self.sweep_interval_s == 0
            || self.play_expiry_ms == 0
        {
            return Err(
                "max_length_s, idle_timeout_s, sweep_interval_s and play_expiry_ms must be positive"
                    .into(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
}

#[derive(Clone)]
struct Rooms {
    bus: Bus,
    sessions: Store,
    pis: Store,
    config: Arc<Config>,
    signer: token::Signer,
    daily: Option<daily::Daily>,
    /// Last transcript / playback / join per live session (this replica's view).
    activity: Arc<Mutex<HashMap<String, i64>>>,
    /// Per live session: when the visitor last spoke, whether a clip is
    /// playing, and what the TV said to them since (an invite, a goodbye).
    quiet: Arc<Mutex<HashMap<String, Quiet>>>,
    /// Ended sessions whose Pi did not confirm its client stopped (its link
    /// was down): session id → Pi id. The sweep asks again until it does.
    unstopped: Arc<Mutex<HashMap<String, String>>>,
}

const TOKEN_KEY: &str = "room-manager-token-key";

/// A session's quiet spell, as the sweep sees it.
#[derive(Debug, Default, Clone)]
struct Quiet {
    /// When the visitor last spoke (a transcript), ms.
    spoke_at: i64,
    /// A clip started and has not ended.
    playing: bool,
    /// The latest play command made, until its clip starts, fails or
    /// expires (a Pi cut off holds its answer): no invite overtakes it.
    pending: Option<String>,
    /// When the visitor was invited back (since they last spoke).
    invited_at: Option<i64>,
    /// When the goodbye was asked for, and its clip's length.
    goodbye: Option<(i64, f64)>,
}

async fn signing_key(bus: &Bus, configured: &str) -> Result<Vec<u8>, bus::Error> {
    if !configured.is_empty() {
        return Ok(configured.as_bytes().to_vec());
    }
    let kv = bus.kv(names::SECRETS_BUCKET).await?;
    let fresh = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    // First replica to start wins; everyone reads the same key.
    let _ = kv.create(TOKEN_KEY, fresh.into()).await;
    let key = kv
        .get(TOKEN_KEY)
        .await
        .map_err(|e| bus::Error::nats("kv get", e))?
        .ok_or_else(|| bus::Error::nats("kv get", "the token key vanished"))?;
    Ok(key.to_vec())
}

pub async fn run(config: Config, bus: Bus, shutdown: CancellationToken) -> Result<(), Error> {
    let daily = (!config.daily_api_key.is_empty())
        .then(|| daily::Daily::new(&config.daily_api_url, &config.daily_api_key));
    let rooms = Rooms {
        sessions: bus.kv(names::SESSIONS_BUCKET).await?,
        pis: bus.kv(names::PIS_BUCKET).await?,
        signer: token::Signer::new(&signing_key(&bus, &config.token_secret).await?),
        bus: bus.clone(),
        config: Arc::new(config),
        daily,
        activity: Arc::default(),
        quiet: Arc::default(),
        unstopped: Arc::default(),
    };
    tracing::info!(
        backend = if rooms.daily.is_some() {
            "daily"
        } else {
            "local"
        },
        "Rooms are ready."
    );
    let service = svc::start(
        bus.client(),
        names::service::ROOM_MANAGER,
        "Session lifecycle",
    )
    .await?;
    let (create, get, end, list) = (
        svc::endpoint(&service, &endpoints::rooms::CREATE).await?,
        svc::endpoint(&service, &endpoints::rooms::GET).await?,
        svc::endpoint(&service, &endpoints::rooms::END).await?,
        svc::endpoint(&service, &endpoints::rooms::LIST).await?,
    );
    let (join, fail, cleanup) = (
        svc::endpoint(&service, &endpoints::rooms::JOIN).await?,
        svc::endpoint(&service, &endpoints::rooms::FAIL).await?,
        svc::endpoint(&service, &endpoints::rooms::CLEANUP).await?,
    );
    let plays = deliver::consume(&rooms).await?;
    let mut subs = Vec::new();
    for subject in subjects::event_wildcards() {
        subs.push(
            bus.client()
                .subscribe(subject)
                .await
                .map_err(|e| bus::Error::nats("subscribe", e))?,
        );
    }
    let mut activity = futures::stream::select_all(subs);
    let watch = {
        let rooms = rooms.clone();
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    m = activity.next() => match m {
                        Some(m) => {
                            rooms.saw_activity(&m.subject);
                            rooms.saw_quiet(&m);
                        }
                        None => return,
                    },
                }
            }
        }
    };
    tokio::join!(
        svc::serve(create, shutdown.clone(), 8, |req: CreateSessionRequest| {
            let r = rooms.clone();
            async move { r.create(req).await }
        }),
        svc::serve(get, shutdown.clone(), 16, |req: SessionRef| {
            let r = rooms.clone();
            async move {
                Ok(SessionReply {
                    session: Some(r.load(&req.session_id).await?.0),
                })
            }
        }),
        svc::serve(end, shutdown.clone(), 8, |req: SessionRef| {
            let r = rooms.clone();
            async move {
                r.end(
                    &req.session_id,
                    if req.reason.is_empty() {
                        "ended by operator"
                    } else {
                        &req.reason
                    },
                )
                .await
            }
        }),
        svc::serve(list, shutdown.clone(), 4, |req: ListSessionsRequest| {
            let r = rooms.clone();
            async move { page(r.list().await?, &req) }
        }),
        svc::serve(join, shutdown.clone(), 8, |req: JoinRequest| {
            let r = rooms.clone();
            async move { r.join(req).await }
        }),
        svc::serve(fail, shutdown.clone(), 8, |req: FailSessionRequest| {
            let r = rooms.clone();
            async move {
                let (s, _) = r.load(&req.session_id).await?;
                if is_live(s.state()) {
                    r.finish(&s, SessionState::Failed, &req.reason).await?;
                }
                Ok(SessionReply {
                    session: Some(r.load(&req.session_id).await?.0),
                })
            }
        }),
        svc::serve(cleanup, shutdown.clone(), 1, |req: CleanupRequest| {
            let r = rooms.clone();
            async move {
                let age = req.older_than_s.unwrap_or(r.config.retention_s);
                r.cleanup(age).await
            }
        }),
        rooms.sweep(shutdown.clone()),
        watch,
        deliver::run(rooms.clone(), plays, shutdown.clone()),
    );
    let _ = service.stop().await;
    Ok(())
}

/// Sessions on one page (newest first).
pub const PAGE: usize = 100;
/// The most a page holds, whatever is asked.
pub const MAX_PAGE: usize = 500;

/// A page's cursor: where the last session of it sorts.
fn cursor(s: &Session) -> String {
    format!("{}:{}", s.created_at_ms, s.id)
}

/// One page of `sessions` (sorted newest first, as [`Rooms::list`] does).
fn page(sessions: Vec<Session>, req: &ListSessionsRequest) -> Result<SessionList, Reject> {
    let after = if req.after.is_empty() {
        None
    } else {
        let (at, id) = req
            .after
            .split_once(':')
            // Any number of ms (the gateway lets up to 19 digits through).
            .and_then(|(at, id)| {
                let at = at.parse::<i128>().ok()?;
                Some((at.clamp(i64::MIN.into(), i64::MAX.into()) as i64, id))
            })
            .ok_or_else(|| {
                Reject::bad_request(format!(
                    "after {:?} is not a page's `next`",
                    req.after.chars().take(80).collect::<String>()
                ))
            })?;
        Some((at, id.to_string()))
    };
    let limit = match req.limit as usize {
        0 => PAGE,
        n => n.min(MAX_PAGE),
    };
    let mut chosen: Vec<Session> = sessions
        .into_iter()
        .filter(|s| {
            // Newest first: after the cursor means created earlier, or at
            // the same moment with a later id.
            after.as_ref().is_none_or(|(at, id)| {
                s.created_at_ms < *at || (s.created_at_ms == *at && s.id > *id)
            })
        })
        .filter(|s| !req.live_only || is_live(s.state()))
        .filter(|s| req.room_url.is_empty() || s.room_url == req.room_url)
        .take(limit + 1)
        .collect();
    let next = if chosen.len() > limit {
        chosen.truncate(limit);
        chosen.last().map(cursor).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(SessionList {
        sessions: chosen,
        next,
    })
}

/// Where [`Rooms::saw_activity`] keeps a session's liveness: the session
/// id, or `{sid}@{pi}` for what came under a Pi's prefix.
fn activity_key(sid: &str, pi: Option<&str>) -> String {
    match pi {
        Some(pi) => format!("{sid}@{pi}"),
        None => sid.to_string(),
    }
}

/// A session that has not ended or failed.
fn is_live(state: SessionState) -> bool {
    matches!(state, SessionState::Waiting | SessionState::Active)
}

impl Rooms {
    async fn load(&self, sid: &str) -> Result<(Session, u64), Reject> {
        subjects::check_id("session id", sid)?;
        kv_get::<Session>(&self.sessions, sid)
            .await?
            .ok_or_else(|| Reject::not_found(format!("unknown session {sid:?}")))
    }

    /// Applies `change` with compare-and-set, retrying on a concurrent write.
    async fn update(&self, sid: &str, change: impl Fn(&mut Session)) -> Result<Session, Reject> {
        for _ in 0..20 {
            let (mut s, rev) = self.load(sid).await?;
            change(&mut s);
            if kv_cas(&self.sessions, sid, &s, rev).await?.is_some() {
                return Ok(s);
            }
        }
        Err(Reject::conflict(format!(
            "session {sid} is being changed concurrently"
        )))
    }

    /// When the events stream last recorded `s` as lively (a line heard,
    /// a clip's progress, a join), in ms; 0 when it holds none. What a
    /// room-manager started after those events goes by, so a restart
    /// never ends a lively session as idle.
    async fn last_activity_recorded(&self, s: &Session) -> i64 {
        let Ok(stream) = self.bus.jetstream().get_stream(names::EVENTS_STREAM).await else {
            return 0;
        };
        let mut last = 0;
        for subject in [
            subjects::session(&s.id, SessionEvent::Transcript),
            subjects::pi_session(&s.pi_id, &s.id, SessionEvent::Playback),
            subjects::pi_session(&s.pi_id, &s.id, SessionEvent::Joined),
        ] {
            if let Ok(m) = stream.get_last_raw_message_by_subject(&subject).await {
                last = last.max((m.time.unix_timestamp_nanos() / 1_000_000) as i64);
            }
        }
        last
    }

    /// Records that a session was lively. What arrives under a Pi's prefix
    /// is kept under that Pi (`{sid}@{pi}`): it counts only if the session
    /// is that Pi's, so no Pi keeps another's session alive.
    fn saw_activity(&self, subject: &str) {
        if let Some((
            pi,
            sid,
            SessionEvent::Transcript | SessionEvent::Playback | SessionEvent::Joined,
        )) = subjects::parse_session_from(subject)
            && let Ok(mut a) = self.activity.lock()
        {
            a.insert(activity_key(sid, pi), now_ms());
        }
    }

    /// Follows a session's quiet spell: a line heard ends it, a play
    /// command made and a clip starting or ending are noted (the quiet
    /// counts from a clip's end; nothing is said over a clip or before a
    /// command still on its way).
    /// Only the session's own Pi's playback counts (checked in the sweep,
    /// which knows the session's Pi).
    fn saw_quiet(&self, m: &bus::async_nats::Message) {
        let Some((pi, sid, event)) = subjects::parse_session_from(&m.subject) else {
            return;
        };
        let Ok(mut q) = self.quiet.lock() else { return };
        match event {
            SessionEvent::Transcript if pi.is_none() => {
                let e = q.entry(sid.to_string()).or_default();
                *e = Quiet {
                    spoke_at: now_ms(),
                    playing: e.playing,
                    ..Quiet::default()
                };
            }
            SessionEvent::Play if pi.is_some() => {
                if let Ok(p) = bus::decode_message::<wire::v1::PlayCommand>(m) {
                    q.entry(activity_key(sid, pi)).or_default().pending = Some(p.command_id);
                }
            }
            SessionEvent::Playback if pi.is_some() => {
                if let Ok(p) = bus::decode_message::<wire::v1::PlaybackEvent>(m) {
                    let e = q.entry(activity_key(sid, pi)).or_default();
                    e.playing = p.state() == wire::v1::PlaybackState::Started;
                    if e.pending.as_deref() == Some(p.command_id.as_str()) {
                        e.pending = None;
                    }
                }
            }
            _ => {}
        }
    }

    /// What the sweep does for a quiet visitor of live session `s`, idle
    /// since `last` (ms): invite them back, then say goodbye, then end the
    /// session once the goodbye has played. The reason to end it, if now.
    async fn nudge_quiet(&self, s: &Session, last: i64, now: i64) -> Option<String> {
        let (invite_ms, goodbye_ms) = (
            (self.config.invite_after_s * 1000) as i64,
            (self.config.goodbye_after_s * 1000) as i64,
        );
        if invite_ms == 0 || s.state() != SessionState::Active {
            return None;
        }
        let (q, playing) = {
            let quiet = self.quiet.lock().ok()?;
            let q = quiet.get(&s.id).cloned().unwrap_or_default();
            let playing = quiet
                .get(&activity_key(&s.id, Some(&s.pi_id)))
                .is_some_and(|p| p.playing || p.pending.is_some());
            (q, playing)
        };
        if playing {
            return None;
        }
        let ask = |kind: wire::v1::NudgeKind, quiet_s: i64| {
            let req = wire::v1::NudgeRequest {
                session_id: s.id.clone(),
                kind: kind as i32,
                quiet_s: u32::try_from(quiet_s).unwrap_or(u32::MAX),
            };
            async move {
                self.bus
                    .request_with_timeout(&endpoints::director::NUDGE, &req, Duration::from_secs(5))
                    .await
            }
        };
        let quiet_s = (now - last.max(q.spoke_at)) / 1000;
        match (q.invited_at, q.goodbye) {
            (None, _) if now >= last.max(q.spoke_at) + invite_ms => {
                match ask(wire::v1::NudgeKind::Invite, quiet_s).await {
                    Ok(reply) => {
                        tracing::info!(session = %s.id, command = %reply.command_id, quiet_s, "Invited a quiet visitor back.");
                        if let Ok(mut quiet) = self.quiet.lock() {
                            quiet.entry(s.id.clone()).or_default().invited_at = Some(now);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(session = %s.id, error = %e, "Cannot invite a quiet visitor back.")
                    }
                }
                None
            }
            (Some(invited), None) if goodbye_ms > 0 && now >= last.max(invited) + goodbye_ms => {
                let said = ask(wire::v1::NudgeKind::Goodbye, quiet_s).await;
                let length_s = match said {
                    Ok(reply) => {
                        tracing::info!(session = %s.id, command = %reply.command_id, quiet_s, "Said goodbye to a gone visitor.");
                        reply.length_s
                    }
                    Err(e) => {
                        tracing::warn!(session = %s.id, error = %e, "Cannot say goodbye; ending the session all the same.");
                        0.0
                    }
                };
                if let Ok(mut quiet) = self.quiet.lock() {
                    quiet.entry(s.id.clone()).or_default().goodbye = Some((now, length_s));
                }
                None
            }
            (Some(_), Some((at, length_s))) if now >= at + (length_s * 1000.0) as i64 + 1000 => {
                Some(format!(
                    "said goodbye: the visitor said nothing for {} s",
                    (now - q.spoke_at.max(s.joined_at_ms)) / 1000
                ))
            }
            _ => None,
        }
    }

    async fn presence(&self, pi_id: &str) -> Result<Option<PiPresence>, Reject> {
        let fresh_after = now_ms() - (self.config.pi_stale_s as i64) * 1000;
        Ok(kv_get::<PiPresence>(&self.pis, pi_id)
            .await?
            .map(|(p, _)| p)
            .filter(|p| p.heartbeat_ms >= fresh_after))
    }

    async fn pick_pi(&self, wanted: &str) -> Result<String, Reject> {
        if !wanted.is_empty() {
            subjects::check_pi_id("pi id", wanted)?;
            return match self.presence(wanted).await? {
                Some(_) => Ok(wanted.to_string()),
                None => Err(Reject::conflict(format!("Pi {wanted:?} is not online"))),
            };
        }
        let mut keys = bus::kv_keys(&self.pis).await?;
        keys.sort();
        for key in keys {
            if let Some(p) = self.presence(&key).await?
                && (p.sessions.len() as u32) < p.max_sessions.max(1)
            {
                return Ok(p.pi_id);
            }
        }
        Err(Reject::conflict("no Pi is online with a free slot"))
    }

    async fn create(&self, req: CreateSessionRequest) -> Result<SessionReply, Reject> {
        if req.browser {
            return self.create_browser(req).await;
        }
        let pi_id = self.pick_pi(&req.pi_id).await?;
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let created = now_ms();
        let expires = created + (self.config.max_length_s as i64) * 1000;
        let mut session = Session {
            id: sid.clone(),
            pi_id: pi_id.clone(),
            room_url: format!("cinema://local/{sid}"),
            token: self.signer.sign(&sid, expires),
            state: SessionState::Waiting as i32,
            created_at_ms: created,
            expires_at_ms: expires,
            backend: "local".into(),
            ..Default::default()
        };
        if let Some(daily) = &self.daily {
            let name = format!("{}{sid}", daily::ROOM_PREFIX);
            let room = daily
                .create_room(&name, expires / 1000)
                .await
                .map_err(|e| Reject::new(502, e.to_string()))?;
            let token = match daily.meeting_token(&room.name, expires / 1000).await {
                Ok(t) => t,
                Err(e) => {
                    let _ = daily.delete_room(&room.name).await;
                    return Err(Reject::new(502, e.to_string()));
                }
            };
            session.backend = "daily".into();
            session.room_url = room.url;
            session.room_name = room.name;
            session.room_token = token;
        }
        kv_cas(&self.sessions, &sid, &session, 0).await?;
        self.bus
            .publish_durable(
                subjects::session(&sid, SessionEvent::Created),
                &SessionCreated {
                    session: Some(session.clone()),
                },
                &bus::ids::created(&sid),
            )
            .await?;
        let spawn = SpawnRequest {
            session_id: sid.clone(),
            token: session.token.clone(),
            room_url: session.room_url.clone(),
            room_token: session.room_token.clone(),
        };
        let reply: Result<SpawnReply, bus::Error> = self
            .bus
            .request_with_timeout(
                &endpoints::pi_spawn(&pi_id),
                &spawn,
                Duration::from_secs(self.config.spawn_timeout_s),
            )
            .await;
        match reply {
            Ok(r) => {
                session = self.update(&sid, |s| s.client_pid = r.pid).await?;
                tracing::info!(session = %sid, pi = %pi_id, pid = r.pid, "Session created.");
                Ok(SessionReply {
                    session: Some(session),
                })
            }
            Err(e) => {
                let reason = format!("Pi {pi_id} could not start a client: {e}");
                tracing::warn!(session = %sid, %reason, "Session failed.");
                self.finish(&session, SessionState::Failed, &reason).await?;
                Err(Reject::from(e))
            }
        }
    }

    /// A session whose TV is a browser page: stored and announced, nothing
    /// spawned; its "Pi" is [`subjects::BROWSER`]. The dashboard-gateway joins it with the session's token when
    /// the page connects its microphone socket (and the director greets).
    async fn create_browser(&self, req: CreateSessionRequest) -> Result<SessionReply, Reject> {
        if !req.pi_id.is_empty() {
            return Err(Reject::bad_request(
                "a browser session runs on no Pi: leave pi_id empty",
            ));
        }
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let created = now_ms();
        let expires = created + (self.config.max_length_s as i64) * 1000;
        let session = Session {
            id: sid.clone(),
            // Its traffic lives under `cinema.pi.browser.session.{sid}.*`.
            pi_id: subjects::BROWSER.into(),
            room_url: format!("cinema://browser/{sid}"),
            token: self.signer.sign(&sid, expires),
            state: SessionState::Waiting as i32,
            created_at_ms: created,
            expires_at_ms: expires,
            backend: "local".into(),
            browser: true,
            ..Default::default()
        };
        kv_cas(&self.sessions, &sid, &session, 0).await?;
        self.bus
            .publish_durable(
                subjects::session(&sid, SessionEvent::Created),
                &SessionCreated {
                    session: Some(session.clone()),
                },
                &bus::ids::created(&sid),
            )
            .await?;
        tracing::info!(session = %sid, "Browser session created.");
        Ok(SessionReply {
            session: Some(session),
        })
    }

    /// A client asks to join: the token must be this session's and unexpired.
    /// Only then is `…joined` published (and the director greets).
    async fn join(&self, req: JoinRequest) -> Result<SessionReply, Reject> {
        let (session, _) = self.load(&req.session_id).await?;
        if let Err(e) = self.signer.verify(&req.session_id, &req.token, now_ms()) {
            tracing::warn!(session = %req.session_id, pid = req.pid, error = %e, "Refused a join.");
            return Err(Reject::new(401, format!("join refused: {e}")));
        }
        if !is_live(session.state()) {
            return Err(Reject::conflict(format!(
                "session {} has ended",
                session.id
            )));
        }
        let at = now_ms();
        let session = self
            .update(&req.session_id, |s| {
                if s.state() == SessionState::Waiting {
                    s.state = SessionState::Active as i32;
                    s.joined_at_ms = at;
                } else {
                    s.client_restarts += 1;
                }
                s.client_pid = req.pid;
            })
            .await?;
        let joined = ClientJoined {
            session_id: session.id.clone(),
            pi_id: req.pi_id.clone(),
            pid: req.pid,
            at_ms: at,
            token: String::new(),
        };
        self.bus
            .publish_durable(
                subjects::pi_session(&session.pi_id, &session.id, SessionEvent::Joined),
                &joined,
                &bus::ids::joined(&session.id, req.pid),
            )
            .await?;
        tracing::info!(session = %session.id, pid = req.pid, "A client joined.");
        Ok(SessionReply {
            session: Some(session),
        })
    }

    /// Marks the session ended/failed, deletes its room, announces it.
    async fn finish(
        &self,
        session: &Session,
        state: SessionState,
        reason: &str,
    ) -> Result<Session, Reject> {
        let sid = session.id.as_str();
        let session = self
            .update(sid, |s| {
                if is_live(s.state()) {
                    s.state = state as i32;
                    s.ended_at_ms = now_ms();
                    s.end_reason = reason.to_string();
                }
            })
            .await?;
        if let (Some(daily), false) = (&self.daily, session.room_name.is_empty())
            && let Err(e) = daily.delete_room(&session.room_name).await
        {
            tracing::warn!(session = %sid, error = %e, "Cannot delete the Daily.co room; the sweep will retry.");
        }
        self.bus
            .publish_durable(
                subjects::session(sid, SessionEvent::Ended),
                &SessionEnded {
                    session_id: sid.to_string(),
                    reason: session.end_reason.clone(),
                    at_ms: now_ms(),
                    state: session.state,
                },
                &bus::ids::ended(sid),
            )
            .await?;
        if let Ok(mut a) = self.activity.lock() {
            a.remove(sid);
            a.retain(|k, _| !k.starts_with(&format!("{sid}@")));
        }
        tracing::info!(session = %sid, reason = %session.end_reason, "Session ended.");
        Ok(session)
    }

    async fn end(&self, sid: &str, reason: &str) -> Result<SessionReply, Reject> {
        let (session, _) = self.load(sid).await?;
        if !is_live(session.state()) {
            return Ok(SessionReply {
                session: Some(session),
            });
        }
        // A browser session's client (the gateway) leaves on `…ended`.
        if !session.browser {
            let stop = StopClientRequest {
                session_id: session.id.clone(),
                reason: reason.to_string(),
            };
            let stopped: Result<StopClientReply, bus::Error> = self
                .bus
                .request_with_timeout(
                    &endpoints::pi_stop(&session.pi_id),
                    &stop,
                    Duration::from_secs(15),
                )
                .await;
            // An answer, even a refusal (no such client), is the Pi's word.
            if let Err(e) = stopped.as_ref().map_err(|e| (e.remote_code(), e))
                && e.0.is_none()
            {
                tracing::warn!(session = %session.id, pi = %session.pi_id, error = %e.1, "The Pi did not confirm the client stopped; the sweep asks again.");
                if let Ok(mut u) = self.unstopped.lock() {
                    u.insert(session.id.clone(), session.pi_id.clone());
                }
            }
        }
        let session = self.finish(&session, SessionState::Ended, reason).await?;
        Ok(SessionReply {
            session: Some(session),
        })
    }

    async fn list(&self) -> Result<Vec<Session>, Reject> {
        let mut sessions = Vec::new();
        for key in bus::kv_keys(&self.sessions).await? {
            if let Some((s, _)) = kv_get::<Session>(&self.sessions, &key).await? {
                sessions.push(s);
            }
        }
        // Newest first; the same moment by id, so pages never overlap.
        sessions.sort_by(|a, b| {
            b.created_at_ms
                .cmp(&a.created_at_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(sessions)
    }

    /// Removes ended sessions' state (session, status record) older than `age_s`.
    async fn cleanup(&self, age_s: u64) -> Result<CleanupReply, Reject> {
        self.cleanup_sessions(&self.list().await?, age_s).await
    }

    /// [`Rooms::cleanup`] over sessions already read.
    async fn cleanup_sessions(
        &self,
        sessions: &[Session],
        age_s: u64,
    ) -> Result<CleanupReply, Reject> {
        // Any age a caller sends (up to u64::MAX seconds) is a cutoff before
        // every session, never an overflow.
        let age_ms = i64::try_from(age_s)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let cutoff = now_ms().saturating_sub(age_ms);
        let mut reply = CleanupReply::default();
        for s in sessions {
            if is_live(s.state()) || s.ended_at_ms > cutoff {
                continue;
            }
            let purged: Result<PurgeReply, bus::Error> = self
                .bus
                .request(
                    &endpoints::status::PURGE,
                    &PurgeRequest {
                        session_id: s.id.clone(),
                    },
                )
                .await;
            if let Err(e) = purged {
                tracing::warn!(session = %s.id, error = %e, "Cannot purge the status record; keeping the session for the next sweep.");
                continue;
            }
            self.sessions
                .purge(&s.id)
                .await
                .map_err(|e| Reject::unavailable(e.to_string()))?;
            reply.removed += 1;
            reply.session_ids.push(s.id.clone());
        }
        if reply.removed > 0 {
            tracing::info!(removed = reply.removed, "Cleaned up ended sessions.");
        }
        Ok(reply)
    }

    /// Ends sessions that expired or lost their Pi; cleans up after retention;
    /// deletes Daily.co rooms left behind.
    async fn sweep(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.config.sweep_interval_s));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(error = %e.message, "The sweep failed; it runs again.");
            }
        }
    }

    /// Asks again the Pis that did not confirm an ended session's client
    /// stopped (the link was down): a client left running would hold the
    /// Pi's mpv and its place for a session that is over.
    async fn stop_leftovers(&self) {
        let leftovers: Vec<(String, String)> = self
            .unstopped
            .lock()
            .map(|u| u.iter().map(|(s, p)| (s.clone(), p.clone())).collect())
            .unwrap_or_default();
        for (sid, pi) in leftovers {
            let stop = StopClientRequest {
                session_id: sid.clone(),
                reason: "the session ended while the Pi was unreachable".into(),
            };
            let stopped: Result<StopClientReply, bus::Error> = self
                .bus
                .request_with_timeout(&endpoints::pi_stop(&pi), &stop, Duration::from_secs(2))
                .await;
            if stopped.is_ok() || stopped.as_ref().is_err_and(|e| e.remote_code().is_some()) {
                tracing::info!(session = %sid, %pi, "The Pi is back; the ended session's client was stopped.");
                if let Ok(mut u) = self.unstopped.lock() {
                    u.remove(&sid);
                }
            }
        }
    }

    async fn sweep_once(&self) -> Result<(), Reject> {
        let now = now_ms();
        // Read once; sessions ended here are replaced by their new state.
        let mut sessions = self.list().await?;
        // Forget liveness of sessions that are gone (or never were: a Pi
        // may name any session id under its prefix).
        if let Ok(mut a) = self.activity.lock() {
            let live: std::collections::HashSet<&str> = sessions
                .iter()
                .filter(|s| is_live(s.state()))
                .map(|s| s.id.as_str())
                .collect();
            a.retain(|k, _| live.contains(k.split('@').next().unwrap_or_default()));
            if let Ok(mut q) = self.quiet.lock() {
                q.retain(|k, _| live.contains(k.split('@').next().unwrap_or_default()));
            }
        }
        for s in &mut sessions {
            if !is_live(s.state()) {
                continue;
            }
            let seen = self.activity.lock().ok().and_then(|a| {
                let own = a.get(&activity_key(&s.id, Some(&s.pi_id))).copied();
                a.get(&s.id).copied().max(own)
            });
            let seen = match seen {
                Some(at) => at,
                // Not seen since this room-manager started: the events
                // stream remembers when the session was last lively.
                None => {
                    let at = self.last_activity_recorded(s).await;
                    if let Ok(mut a) = self.activity.lock() {
                        let known = a.entry(s.id.clone()).or_insert(at);
                        *known = (*known).max(at);
                    }
                    at
                }
            };
            let last = seen.max(s.joined_at_ms).max(s.created_at_ms);
            let reason = if now >= s.created_at_ms + (self.config.max_length_s as i64) * 1000 {
                Some(format!(
                    "reached its maximum length of {} s",
                    self.config.max_length_s
                ))
            } else if now >= last + (self.config.idle_timeout_s as i64) * 1000 {
                Some(format!("idle for {} s", self.config.idle_timeout_s))
            } else if !s.browser && self.presence(&s.pi_id).await?.is_none() {
                Some(format!("Pi {} went offline", s.pi_id))
            } else {
                self.nudge_quiet(s, last, now).await
            };
            if let Some(reason) = reason {
                tracing::info!(session = %s.id, %reason, "Ending a session.");
                if let Some(ended) = self.end(&s.id, &reason).await?.session {
                    *s = ended;
                }
            }
        }
        self.stop_leftovers().await;
        self.cleanup_sessions(&sessions, self.config.retention_s)
            .await?;
        if let Some(daily) = &self.daily {
            // Rooms of sessions that ended (or whose expiry passed) go; a room
            // with no session record yet may be one being created right now.
            let ended: std::collections::HashSet<&str> = sessions
                .iter()
                .filter(|s| !is_live(s.state()))
                .map(|s| s.room_name.as_str())
                .collect();
            match daily.list_rooms().await {
                Ok(rooms) => {
                    for room in rooms {
                        let expired = room.config.exp.is_some_and(|exp| exp * 1000 <= now);
                        if expired || ended.contains(room.name.as_str()) {
                            tracing::info!(room = %room.name, "Deleting a Daily.co room with no live session.");
                            let _ = daily.delete_room(&room.name).await;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Cannot list Daily.co rooms."),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, at: i64, state: SessionState) -> Session {
        Session {
            id: id.into(),
            created_at_ms: at,
            state: state as i32,
            room_url: format!("cinema://local/{id}"),
            ..Default::default()
        }
    }

    #[test]
    fn pages_cover_every_session_once_newest_first() {
        // Sorted as `Rooms::list` sorts: newest first, the same moment by id.
        let all: Vec<Session> = (0..7)
            .map(|i| {
                session(
                    &format!("s{i}"),
                    1000 - (i / 2) as i64,
                    SessionState::Active,
                )
            })
            .collect();
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let p = page(
                all.clone(),
                &ListSessionsRequest {
                    limit: 3,
                    after: after.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
            assert!(p.sessions.len() <= 3);
            seen.extend(p.sessions.iter().map(|s| s.id.clone()));
            if p.next.is_empty() {
                break;
            }
            after = p.next;
        }
        let want: Vec<String> = all.iter().map(|s| s.id.clone()).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn filters_limits_and_bad_cursors() {
        let all = vec![
            session("a", 3, SessionState::Ended),
            session("b", 2, SessionState::Active),
            session("c", 1, SessionState::Waiting),
        ];
        let live = page(
            all.clone(),
            &ListSessionsRequest {
                live_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(live.sessions.len(), 2);
        assert!(live.next.is_empty());
        let by_room = page(
            all.clone(),
            &ListSessionsRequest {
                room_url: "cinema://local/c".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(by_room.sessions[0].id, "c");
        let many: Vec<Session> = (0..2000)
            .map(|i| session(&format!("s{i:04}"), 5000 - i, SessionState::Ended))
            .collect();
        let capped = page(
            many,
            &ListSessionsRequest {
                limit: 100_000,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(capped.sessions.len(), MAX_PAGE);
        for bad in ["x", "12", "x:y"] {
            let err = page(
                all.clone(),
                &ListSessionsRequest {
                    after: bad.into(),
                    ..Default::default()
                },
            )
            .unwrap_err();
            assert_eq!(err.code, 400, "{bad}");
        }
    }
}
