//! Every request on the bus, typed once: an [`Endpoint`] is a subject with
//! the request it takes and the reply it gives. Callers send with
//! [`crate::Bus::request`] and servers serve with [`crate::service::serve`],
//! both through the same constant, so the two sides cannot disagree on a
//! type. (The subjects themselves are built in [`crate::subjects`].)

use std::borrow::Cow;
use std::marker::PhantomData;

use wire::v1::{
    AudioDevices, AudioDevicesRequest, CleanupReply, CleanupRequest, CreateSessionRequest,
    FailSessionRequest, FilmList, GetClipReply, GetClipRequest, IngestSummary, JoinRequest,
    ListFilmsRequest, ListSessionsRequest, NudgeReply, NudgeRequest, PlayDelivered, PlayDelivery,
    PurgeReply, PurgeRequest, ReloadRequest, SearchReply, SearchRequest, SessionList, SessionRef,
    SessionReply, SetAudioInput, SpawnReply, SpawnRequest, StatusRecord, StatusRequest,
    StopClientReply, StopClientRequest,
};

use crate::subjects;

/// A request subject that takes `Req` and answers `Resp` (or a refusal).
pub struct Endpoint<Req, Resp> {
    name: &'static str,
    subject: Cow<'static, str>,
    types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> Endpoint<Req, Resp> {
    /// An endpoint on a fixed subject.
    pub const fn fixed(name: &'static str, subject: &'static str) -> Self {
        Endpoint {
            name,
            subject: Cow::Borrowed(subject),
            types: PhantomData,
        }
    }

    /// An endpoint on a subject built at run time (one Pi's, one session's).
    pub fn at(name: &'static str, subject: String) -> Self {
        Endpoint {
            name,
            subject: Cow::Owned(subject),
            types: PhantomData,
        }
    }

    /// The endpoint's name in the services API (`$SRV.STATS` lists it).
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl<Req, Resp> Endpoint<Req, Resp>
where
    Req: prost::Message + prost::Name + Default,
    Resp: prost::Message + prost::Name,
{
    /// One request of this endpoint, received on a plain subscription (an
    /// endpoint its receiver answers itself, not through the services API).
    pub fn decode_request(&self, msg: &async_nats::Message) -> crate::Result<Req> {
        crate::decode_message(msg)
    }

    /// Answers such a request with this endpoint's reply type.
    pub async fn answer(
        &self,
        client: &async_nats::Client,
        reply: async_nats::Subject,
        resp: &Resp,
    ) -> crate::Result<()> {
        let (headers, payload) = crate::encode(resp);
        client
            .publish_with_headers(reply, headers, payload)
            .await
            .map_err(|e| crate::Error::nats("answer", e))
    }
}

impl<Req, Resp> Clone for Endpoint<Req, Resp> {
    fn clone(&self) -> Self {
        Endpoint {
            name: self.name,
            subject: self.subject.clone(),
            types: PhantomData,
        }
    }
}

impl<Req, Resp> std::fmt::Debug for Endpoint<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.subject, self.name)
    }
}

/// room-manager's requests: sessions' lifecycle.
pub mod rooms {
    use super::*;
    pub const CREATE: Endpoint<CreateSessionRequest, SessionReply> =
        Endpoint::fixed("create", subjects::rooms::CREATE);
    pub const GET: Endpoint<SessionRef, SessionReply> =
        Endpoint::fixed("get", subjects::rooms::GET);
    pub const END: Endpoint<SessionRef, SessionReply> =
        Endpoint::fixed("end", subjects::rooms::END);
    pub const LIST: Endpoint<ListSessionsRequest, SessionList> =
        Endpoint::fixed("list", subjects::rooms::LIST);
    /// A Pi's client says it is ready for its session.
    pub const JOIN: Endpoint<JoinRequest, SessionReply> =
        Endpoint::fixed("join", subjects::rooms::JOIN);
    /// A Pi's spawner reports that a session's client died.
    pub const FAIL: Endpoint<FailSessionRequest, SessionReply> =
        Endpoint::fixed("fail", subjects::rooms::FAIL);
    pub const CLEANUP: Endpoint<CleanupRequest, CleanupReply> =
        Endpoint::fixed("cleanup", subjects::rooms::CLEANUP);
}

/// clip-selector's requests: the library.
pub mod clips {
    use super::*;
    pub const SEARCH: Endpoint<SearchRequest, SearchReply> =
        Endpoint::fixed("search", subjects::clips::SEARCH);
    pub const GET: Endpoint<GetClipRequest, GetClipReply> =
        Endpoint::fixed("get", subjects::clips::GET);
    pub const FILMS: Endpoint<ListFilmsRequest, FilmList> =
        Endpoint::fixed("films", subjects::clips::FILMS);
    /// Ingest the library folder again now.
    pub const RELOAD: Endpoint<ReloadRequest, IngestSummary> =
        Endpoint::fixed("reload", subjects::clips::RELOAD);
}

/// status-store's requests: conversation records.
pub mod director {
    use super::*;
    pub const NUDGE: Endpoint<NudgeRequest, NudgeReply> =
        Endpoint::fixed("nudge", subjects::director::NUDGE);
}

pub mod status {
    use super::*;
    pub const GET: Endpoint<StatusRequest, StatusRecord> =
        Endpoint::fixed("get", subjects::status::GET);
    pub const PURGE: Endpoint<PurgeRequest, PurgeReply> =
        Endpoint::fixed("purge", subjects::status::PURGE);
}

/// One Pi's spawner starts a session's client.
pub fn pi_spawn(pi_id: &str) -> Endpoint<SpawnRequest, SpawnReply> {
    Endpoint::at("spawn", subjects::pi_spawn(pi_id))
}

/// One Pi's spawner stops a session's client.
pub fn pi_stop(pi_id: &str) -> Endpoint<StopClientRequest, StopClientReply> {
    Endpoint::at("stop", subjects::pi_stop(pi_id))
}

/// One Pi's capture devices.
pub fn pi_devices(pi_id: &str) -> Endpoint<AudioDevicesRequest, AudioDevices> {
    Endpoint::at("devices", subjects::pi_devices(pi_id))
}

/// Chooses one Pi's audio input; answers with its devices.
pub fn pi_audio_input(pi_id: &str) -> Endpoint<SetAudioInput, AudioDevices> {
    Endpoint::at("audio_input", subjects::pi_audio_input(pi_id))
}

/// A play command handed to one session's client on its Pi (a plain
/// request, not the services API: the client answers it itself).
pub fn pi_delivery(pi_id: &str, session_id: &str) -> Endpoint<PlayDelivery, PlayDelivered> {
    Endpoint::at("deliver", subjects::pi_delivery(pi_id, session_id))
}
