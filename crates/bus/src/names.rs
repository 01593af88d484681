//! Every stream, consumer, bucket, header and service name of the system.

/// Header carrying the protobuf full name of the payload (`cinema.v1.PlayCommand`).
pub const TYPE_HEADER: &str = "Cinema-Type";
/// JetStream de-duplication header.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
pub const SERVICE_ERROR_HEADER: &str = "Nats-Service-Error";
pub const SERVICE_ERROR_CODE_HEADER: &str = "Nats-Service-Error-Code";

/// The hub's JetStream domain (`nats/hub.conf`). Programs behind a Pi's leaf
/// server reach the hub's streams and buckets through it
/// (`NATS_JS_DOMAIN=cinema`): a leaf's own `$JS.API` does not cross.
pub const JS_DOMAIN: &str = "cinema";

/// Session facts: created, joined, transcripts, plays, playback, conversation, ended.
pub const EVENTS_STREAM: &str = "CINEMA_EVENTS";
/// Utterances waiting for an stt worker (work-queue retention).
pub const UTTERANCES_STREAM: &str = "CINEMA_UTTERANCES";

/// Durable consumer of the llm service (joined + transcript).
pub const LLM_CONSUMER: &str = "llm";
/// Durable consumer of status-store (every session event).
pub const STATUS_CONSUMER: &str = "status-store";
/// Durable consumer shared by the stt workers.
pub const STT_CONSUMER: &str = "stt";
/// Durable consumer of room-manager's play-command hand-over (every Pi's
/// play commands, kept until the Pi takes them or they expire).
pub const PLAYS_CONSUMER: &str = "room-manager-plays";

/// Sessions owned by room-manager, keyed by session id.
pub const SESSIONS_BUCKET: &str = "cinema-sessions";
/// Conversation records written only by status-store, keyed by session id.
pub const STATUS_BUCKET: &str = "cinema-status";
/// Director state of each session (llm), keyed by session id.
pub const CONVERSATIONS_BUCKET: &str = "cinema-conversations";
/// room-manager's secrets (the token signing key), shared by its replicas.
pub const SECRETS_BUCKET: &str = "cinema-secrets";
/// Pi presence, keyed by Pi id, refreshed by each pi-spawner.
pub const PIS_BUCKET: &str = "cinema-pis";
/// Every bucket of the hub.
pub const BUCKETS: [&str; 5] = [
    SESSIONS_BUCKET,
    STATUS_BUCKET,
    CONVERSATIONS_BUCKET,
    SECRETS_BUCKET,
    PIS_BUCKET,
];

/// Names under which each service registers with the NATS services API; the
/// queue group of a service's endpoints carries the same name.
pub mod service {
    pub const ROOM_MANAGER: &str = "room-manager";
    pub const STT: &str = "stt";
    pub const LLM: &str = "llm";
    pub const CLIP_SELECTOR: &str = "clip-selector";
    pub const STATUS_STORE: &str = "status-store";
    pub const DASHBOARD_GATEWAY: &str = "dashboard-gateway";
    pub const PI_SPAWNER: &str = "pi-spawner";
    pub const PI_CLIENT: &str = "pi-client";

    /// The hub's own services: all of them answering is a healthy hub,
    /// whether or not any Pi is on.
    pub const HUB: [&str; 6] = [
        ROOM_MANAGER,
        STT,
        LLM,
        CLIP_SELECTOR,
        STATUS_STORE,
        DASHBOARD_GATEWAY,
    ];

    /// Every long-running service of an installation: the hub's and each
    /// Pi's spawner (pi-client runs per session).
    pub const ALL: [&str; 7] = {
        let mut all = [PI_SPAWNER; 7];
        let mut i = 0;
        while i < HUB.len() {
            all[i] = HUB[i];
            i += 1;
        }
        all
    };
}
