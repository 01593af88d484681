//! room-manager: the session lifecycle. Creates a session (id + scoped token)
//! in the local backend, asks the chosen Pi's spawner to start a client,
//! marks the session active when the client joins, and ends it everywhere.

use std::time::Duration;

use bus::service::{self as svc, Reject};
use bus::subjects::{self, SessionEvent};
use bus::{Bus, kv_cas, kv_get, names};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::{
    ClientJoined, CreateSessionRequest, ListSessionsRequest, PiPresence, Session, SessionCreated,
    SessionEnded, SessionList, SessionRef, SessionReply, SessionState, SpawnReply, SpawnRequest,
    StopClientReply, StopClientRequest,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// A Pi whose presence is older than this is not offered new sessions.
    pub pi_stale_s: u64,
    /// How long to wait for a spawner to start a client.
    pub spawn_timeout_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            pi_stale_s: 30,
            spawn_timeout_s: 10,
        }
    }
}

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_ROOM_MANAGER_";
    fn nats_url(&self) -> &str {
        &self.nats_url
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
    sessions: bus::async_nats::jetstream::kv::Store,
    pis: bus::async_nats::jetstream::kv::Store,
    config: Config,
}

pub async fn run(config: Config, bus: Bus, shutdown: CancellationToken) -> Result<(), Error> {
    let rooms = Rooms {
        sessions: bus.kv(names::SESSIONS_BUCKET).await?,
        pis: bus.kv(names::PIS_BUCKET).await?,
        bus: bus.clone(),
        config,
    };
    let service = svc::start(
        bus.client(),
        names::service::ROOM_MANAGER,
        "Session lifecycle",
    )
    .await?;
    let create = svc::endpoint(&service, "create", subjects::rooms::CREATE).await?;
    let get = svc::endpoint(&service, "get", subjects::rooms::GET).await?;
    let end = svc::endpoint(&service, "end", subjects::rooms::END).await?;
    let list = svc::endpoint(&service, "list", subjects::rooms::LIST).await?;
    let joined = bus
        .durable_consumer(
            names::EVENTS_STREAM,
            names::ROOM_MANAGER_CONSUMER,
            vec![SessionEvent::Joined.wildcard()],
            Duration::from_secs(30),
            10,
        )
        .await?;
    tokio::join!(
        svc::serve(create, shutdown.clone(), 8, |req: CreateSessionRequest| {
            let r = rooms.clone();
            async move { r.create(req).await }
        }),
        svc::serve(get, shutdown.clone(), 16, |req: SessionRef| {
            let r = rooms.clone();
            async move {
                let (session, _) = r.load(&req.session_id).await?;
                Ok(SessionReply {
                    session: Some(session),
                })
            }
        }),
        svc::serve(end, shutdown.clone(), 8, |req: SessionRef| {
            let r = rooms.clone();
            async move { r.end(req).await }
        }),
        svc::serve(list, shutdown.clone(), 4, |_: ListSessionsRequest| {
            let r = rooms.clone();
            async move { r.list().await }
        }),
        rooms.watch_joins(joined, shutdown.clone()),
    );
    let _ = service.stop().await;
    Ok(())
}

impl Rooms {
    async fn load(&self, sid: &str) -> Result<(Session, u64), Reject> {
        bus::subjects::check_id("session id", sid)?;
        kv_get::<Session>(&self.sessions, sid)
            .await?
            .ok_or_else(|| Reject::not_found(format!("unknown session {sid:?}")))
    }

    /// Applies `change` with compare-and-set, retrying on a concurrent write.
    async fn update(&self, sid: &str, change: impl Fn(&mut Session)) -> Result<Session, Reject> {
        for _ in 0..10 {
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

    async fn pick_pi(&self, wanted: &str) -> Result<String, Reject> {
        if !wanted.is_empty() {
            bus::subjects::check_id("pi id", wanted)?;
            return Ok(wanted.to_string());
        }
        let mut keys = bus::kv_keys(&self.pis).await?;
        keys.sort();
        let fresh_after = now_ms() - (self.config.pi_stale_s as i64) * 1000;
        for key in keys {
            if let Some((p, _)) = kv_get::<PiPresence>(&self.pis, &key).await?
                && p.heartbeat_ms >= fresh_after
                && (p.sessions.len() as u32) < p.max_sessions.max(1)
            {
                return Ok(p.pi_id);
            }
        }
        Err(Reject::unavailable("no Pi is online with a free slot"))
    }

    async fn create(&self, req: CreateSessionRequest) -> Result<SessionReply, Reject> {
        let pi_id = self.pick_pi(&req.pi_id).await?;
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let mut session = Session {
            id: sid.clone(),
            pi_id: pi_id.clone(),
            room_url: format!("cinema://local/{sid}"),
            token: uuid::Uuid::new_v4().simple().to_string(),
            state: SessionState::Waiting as i32,
            created_at_ms: now_ms(),
            backend: "local".into(),
            ..Default::default()
        };
        kv_cas(&self.sessions, &sid, &session, 0).await?;
        self.bus
            .publish_durable(
                subjects::session(&sid, SessionEvent::Created),
                &SessionCreated {
                    session: Some(session.clone()),
                },
                &format!("created-{sid}"),
            )
            .await?;
        let spawn = SpawnRequest {
            session_id: sid.clone(),
            token: session.token.clone(),
            room_url: session.room_url.clone(),
        };
        let reply: Result<SpawnReply, bus::Error> = self
            .bus
            .request_with_timeout(
                subjects::pi_spawn(&pi_id),
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
                self.finish(&sid, SessionState::Failed, &reason).await?;
                Err(Reject::from(e))
            }
        }
    }

    async fn finish(
        &self,
        sid: &str,
        state: SessionState,
        reason: &str,
    ) -> Result<Session, Reject> {
        let session = self
            .update(sid, |s| {
                s.state = state as i32;
                s.ended_at_ms = now_ms();
                s.end_reason = reason.to_string();
            })
            .await?;
        self.bus
            .publish_durable(
                subjects::session(sid, SessionEvent::Ended),
                &SessionEnded {
                    session_id: sid.to_string(),
                    reason: reason.to_string(),
                    at_ms: now_ms(),
                    state: state as i32,
                },
                &format!("ended-{sid}"),
            )
            .await?;
        Ok(session)
    }

    async fn end(&self, req: SessionRef) -> Result<SessionReply, Reject> {
        let (session, _) = self.load(&req.session_id).await?;
        if matches!(session.state(), SessionState::Ended | SessionState::Failed) {
            return Ok(SessionReply {
                session: Some(session),
            });
        }
        let stop = StopClientRequest {
            session_id: session.id.clone(),
            reason: req.reason.clone(),
        };
        let stopped: Result<StopClientReply, bus::Error> = self
            .bus
            .request_with_timeout(
                subjects::pi_stop(&session.pi_id),
                &stop,
                Duration::from_secs(15),
            )
            .await;
        if let Err(e) = stopped {
            tracing::warn!(session = %session.id, pi = %session.pi_id, error = %e, "The Pi did not confirm the client stopped.");
        }
        let reason = if req.reason.is_empty() {
            "ended by operator"
        } else {
            req.reason.as_str()
        };
        let session = self
            .finish(&session.id, SessionState::Ended, reason)
            .await?;
        tracing::info!(session = %session.id, %reason, "Session ended.");
        Ok(SessionReply {
            session: Some(session),
        })
    }

    async fn list(&self) -> Result<SessionList, Reject> {
        let mut sessions = Vec::new();
        for key in bus::kv_keys(&self.sessions).await? {
            if let Some((s, _)) = kv_get::<Session>(&self.sessions, &key).await? {
                sessions.push(s);
            }
        }
        sessions.sort_by_key(|s| std::cmp::Reverse(s.created_at_ms));
        Ok(SessionList { sessions })
    }

    /// Marks sessions active when their client joins with the right token.
    async fn watch_joins(
        &self,
        consumer: bus::async_nats::jetstream::consumer::PullConsumer,
        shutdown: CancellationToken,
    ) {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "Cannot consume join events.");
                return;
            }
        };
        loop {
            let msg = tokio::select! {
                () = shutdown.cancelled() => return,
                m = messages.next() => match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => { tracing::warn!(error = %e, "Join events interrupted."); continue; }
                    None => return,
                },
            };
            match bus::decode_message::<ClientJoined>(&msg) {
                Ok(j) => match self.load(&j.session_id).await {
                    Ok((s, _)) if s.token != j.token => {
                        tracing::warn!(session = %j.session_id, "A client joined with a wrong token; ignored.");
                    }
                    Ok((s, _)) if s.state() == SessionState::Waiting => {
                        let _ = self
                            .update(&j.session_id, |s| {
                                s.state = SessionState::Active as i32;
                                s.joined_at_ms = j.at_ms;
                            })
                            .await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(session = %j.session_id, error = %e.message, "Join for an unknown session.")
                    }
                },
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, error = %e, "Dropped a malformed join event.")
                }
            }
            let _ = msg.ack().await;
        }
    }
}
