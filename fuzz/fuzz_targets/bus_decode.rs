//! Every message type of `proto/` (59 of them: whatever a service
//! or a Pi may take from the bus), decoded from any bytes: an error or a
//! message, never a panic. The first byte picks the type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::v1;

fn decode<M: wire::Message + wire::Name + Default>(payload: &[u8]) {
    let _ = bus::decode::<M>(None, payload);
}

fuzz_target!(|data: &[u8]| {
    let Some((kind, payload)) = data.split_first() else {
        return;
    };
    match kind % 59 {
        0 => decode::<v1::Clip>(payload),
        1 => decode::<v1::SearchRequest>(payload),
        2 => decode::<v1::SearchHit>(payload),
        3 => decode::<v1::SearchReply>(payload),
        4 => decode::<v1::GetClipRequest>(payload),
        5 => decode::<v1::GetClipReply>(payload),
        6 => decode::<v1::ListFilmsRequest>(payload),
        7 => decode::<v1::Film>(payload),
        8 => decode::<v1::FilmList>(payload),
        9 => decode::<v1::IngestSummary>(payload),
        10 => decode::<v1::ReloadRequest>(payload),
        11 => decode::<v1::CatalogFilm>(payload),
        12 => decode::<v1::Utterance>(payload),
        13 => decode::<v1::AudioFrame>(payload),
        14 => decode::<v1::Transcript>(payload),
        15 => decode::<v1::PlayCommand>(payload),
        16 => decode::<v1::PlayDelivery>(payload),
        17 => decode::<v1::PlayDelivered>(payload),
        18 => decode::<v1::PlaybackEvent>(payload),
        19 => decode::<v1::UserLine>(payload),
        20 => decode::<v1::SearchDone>(payload),
        21 => decode::<v1::OptionsConsidered>(payload),
        22 => decode::<v1::Reasoning>(payload),
        23 => decode::<v1::ClipPlayed>(payload),
        24 => decode::<v1::TurnLatency>(payload),
        25 => decode::<v1::DirectorError>(payload),
        26 => decode::<v1::StatusUpdate>(payload),
        27 => decode::<v1::ConversationEvent>(payload),
        28 => decode::<v1::ConversationState>(payload),
        29 => decode::<v1::Exchange>(payload),
        30 => decode::<v1::PiPresence>(payload),
        31 => decode::<v1::SpawnRequest>(payload),
        32 => decode::<v1::SpawnReply>(payload),
        33 => decode::<v1::StopClientRequest>(payload),
        34 => decode::<v1::StopClientReply>(payload),
        35 => decode::<v1::ClientIssue>(payload),
        36 => decode::<v1::AudioDevicesRequest>(payload),
        37 => decode::<v1::AudioDevices>(payload),
        38 => decode::<v1::SetAudioInput>(payload),
        39 => decode::<v1::Session>(payload),
        40 => decode::<v1::CreateSessionRequest>(payload),
        41 => decode::<v1::SessionRef>(payload),
        42 => decode::<v1::SessionReply>(payload),
        43 => decode::<v1::ListSessionsRequest>(payload),
        44 => decode::<v1::SessionList>(payload),
        45 => decode::<v1::SessionCreated>(payload),
        46 => decode::<v1::JoinRequest>(payload),
        47 => decode::<v1::FailSessionRequest>(payload),
        48 => decode::<v1::CleanupRequest>(payload),
        49 => decode::<v1::CleanupReply>(payload),
        50 => decode::<v1::ClientJoined>(payload),
        51 => decode::<v1::SessionEnded>(payload),
        52 => decode::<v1::StatusMessage>(payload),
        53 => decode::<v1::StatusRecord>(payload),
        54 => decode::<v1::StatusRequest>(payload),
        55 => decode::<v1::PurgeRequest>(payload),
        56 => decode::<v1::PurgeReply>(payload),
        57 => decode::<v1::NudgeRequest>(payload),
        _ => decode::<v1::NudgeReply>(payload),
    }
});
