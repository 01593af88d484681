//! The wire types of Cinema Chat: every payload that crosses NATS.
//!
//! Generated from `proto/cinema/v1/*.proto`. Every message implements
//! [`prost::Name`], whose full name travels in the bus crate's type header.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/cinema.v1.rs"));
}

pub use prost::{Message, Name};

/// The encoded `FileDescriptorSet` of every wire type, for decoding a
/// message known only by its type name (the bus's type header).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));

/// Milliseconds since the Unix epoch, the time unit of every `*_ms` field.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl v1::SessionState {
    /// The word the first generation's status API used for this state.
    pub fn status_word(self) -> &'static str {
        match self {
            Self::Unspecified | Self::Waiting => "waiting",
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::v1::*;
    use prost::{Message, Name};

    #[test]
    fn names_are_fully_qualified() {
        assert_eq!(PlayCommand::full_name(), "cinema.v1.PlayCommand");
        assert_eq!(Session::full_name(), "cinema.v1.Session");
    }

    #[test]
    fn round_trip_and_garbage() {
        let cmd = PlayCommand {
            session_id: "s1".into(),
            command_id: "c1".into(),
            clip_id: "clip".into(),
            greeting: true,
            at_ms: 7,
        };
        let bytes = cmd.encode_to_vec();
        assert_eq!(PlayCommand::decode(bytes.as_slice()).unwrap(), cmd);
        // A truncated field is a decode error, never a panic.
        assert!(PlayCommand::decode(&[0x0a, 0x05, b'a'][..]).is_err());
    }
}
