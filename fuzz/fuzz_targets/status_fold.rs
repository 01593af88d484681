//! status-store's fold, the one place every session event lands: a run of
//! events of any kinds and bytes, some of them redelivered, folded into one
//! record. Never a panic; a redelivered event changes nothing.
//!
//! Input: records of `[kind][sequence][length][payload…]`.
#![no_main]

use bus::subjects::SessionEvent;
use libfuzzer_sys::fuzz_target;
use wire::v1::StatusRecord;

fuzz_target!(|data: &[u8]| {
    let mut rec = StatusRecord {
        session_id: "fuzz".into(),
        status: "waiting".into(),
        ..Default::default()
    };
    let mut rest = data;
    while let [kind, seq, len, tail @ ..] = rest {
        let len = (*len as usize).min(tail.len());
        let (payload, after) = tail.split_at(len);
        rest = after;
        let event = SessionEvent::ALL[*kind as usize % SessionEvent::ALL.len()];
        let seq = u64::from(*seq);
        let before = rec.clone();
        match status_store::fold_payload(&mut rec, event, payload, seq) {
            Ok(false) => assert_eq!(rec, before, "a redelivery changed the record"),
            Err(_) => assert_eq!(rec, before, "a bad event changed the record"),
            Ok(true) => {}
        }
    }
});
