//! Every message type a service takes from the bus, decoded from any bytes:
//! an error or a message, never a panic. The first byte picks the type.
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
    match kind % 16 {
        0 => decode::<v1::Utterance>(payload),
        1 => decode::<v1::Transcript>(payload),
        2 => decode::<v1::PlayCommand>(payload),
        3 => decode::<v1::PlaybackEvent>(payload),
        4 => decode::<v1::ConversationEvent>(payload),
        5 => decode::<v1::ClientIssue>(payload),
        6 => decode::<v1::ClientJoined>(payload),
        7 => decode::<v1::SessionCreated>(payload),
        8 => decode::<v1::SessionEnded>(payload),
        9 => decode::<v1::AudioFrame>(payload),
        10 => decode::<v1::PiPresence>(payload),
        11 => decode::<v1::SearchRequest>(payload),
        12 => decode::<v1::CreateSessionRequest>(payload),
        13 => decode::<v1::JoinRequest>(payload),
        14 => decode::<v1::StatusRecord>(payload),
        _ => decode::<v1::ListSessionsRequest>(payload),
    }
});
