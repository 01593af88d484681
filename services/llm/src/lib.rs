//! llm: the director. Greets once when a session's Pi joins and answers every
//! final, non-empty transcript with one clip. The `retrieval` director
//! (default, offline) answers with the line that followed the most similar
//! line in a film, falling back to description search and generic replies.
//!
//! Modules: `config` (typed settings), `sessions` (a task per session on
//! this replica), `order` (the cross-replica ordering invariant),
//! `director` (greeting and turns, state and records), `retrieval` (the
//! offline director), `openai` (a chat-completions model as director).

use std::sync::Arc;

use bus::subjects;
use bus::{Bus, names};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod config;
mod director;
pub mod openai;
mod order;
pub mod phrase;
mod retrieval;
mod sessions;

pub use config::{Config, DirectorKind, Flow};
pub use retrieval::{Decision, decide, pick, search_hits, search_with_limit};
/// How the first generation showed a played clip.
pub use tools::display;

use director::Director;
use sessions::{Job, Sessions, session_task, time_now_ns};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
    #[error("{0}")]
    Config(String),
}

pub async fn run(config: Config, bus: Bus, shutdown: CancellationToken) -> Result<(), Error> {
    let openai = match config.director {
        DirectorKind::OpenAi => Some(openai::OpenAi::new(&config).map_err(Error::Config)?),
        DirectorKind::Retrieval => None,
    };
    let director = Arc::new(Director {
        state: bus.kv(names::CONVERSATIONS_BUCKET).await?,
        bus: bus.clone(),
        config,
        openai,
        events: bus
            .jetstream()
            .get_stream(names::EVENTS_STREAM)
            .await
            .map_err(|e| bus::Error::nats("events stream", e))?,
    });
    let service = bus::service::start(
        bus.client(),
        names::service::LLM,
        "The conversation director",
    )
    .await?;
    let nudges = bus::service::endpoint(&service, &bus::endpoints::director::NUDGE).await?;
    let nudging = {
        let director = director.clone();
        tokio::spawn(bus::service::serve(
            nudges,
            shutdown.clone(),
            8,
            move |req: wire::v1::NudgeRequest| {
                let director = director.clone();
                async move { director.nudge(req).await }
            },
        ))
    };
    let consumer = bus.consumer(&bus::consumers::llm()).await?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| bus::Error::nats("consume", e))?;
    tracing::info!(
        director = %director.config.director,
        flow = %director.config.flow,
        "The director is ready."
    );
    let sessions: Sessions = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(msg) = bus::next_or_shutdown(&mut messages, &shutdown, "session events").await {
        let queued_ms = msg
            .info()
            .map(|i| (time_now_ns() - i.published.unix_timestamp_nanos()).max(0) / 1_000_000)
            .unwrap_or(0) as u32;
        let Some((sid, _)) = subjects::parse_session(&msg.subject) else {
            let _ = msg.ack().await;
            continue;
        };
        let sid = sid.to_string();
        let job = Job { msg, queued_ms };
        let mut map = sessions.lock().unwrap_or_else(|p| p.into_inner());
        let job = match map.get(&sid) {
            Some(tx) => match tx.send(job) {
                Ok(()) => continue,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(job);
        map.insert(sid.clone(), tx);
        tasks.spawn(session_task(
            director.clone(),
            sid,
            rx,
            sessions.clone(),
            shutdown.clone(),
        ));
        while tasks.try_join_next().is_some() {}
    }
    // Let the turns in progress finish; queued events go back to the stream.
    sessions.lock().unwrap_or_else(|p| p.into_inner()).clear();
    while tasks.join_next().await.is_some() {}
    let _ = nudging.await;
    let _ = service.stop().await;
    Ok(())
}
