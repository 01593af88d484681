//! `cinema tap [SUBJECT]`: prints bus traffic as JSON lines, each message
//! decoded from protobuf by the type named in its `Cinema-Type` header.

use std::io::Write;

use anyhow::Context;
use futures::StreamExt;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct TapArgs {
    /// Subject to watch (NATS wildcards allowed).
    #[arg(default_value = bus::subjects::EVERYTHING)]
    pub subject: String,
    /// Only this session's traffic (its events and commands).
    #[arg(long)]
    pub session: Option<String>,
    /// Leave out the 20 ms audio frames (on by default: they are many).
    #[arg(long, default_value_t = false)]
    pub audio: bool,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
}

/// Decodes one message as a JSON line: subject, type, headers, the message
/// (or, for an unknown type or bad bytes, why it could not be read).
pub fn describe(
    pool: &DescriptorPool,
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> Value {
    let type_name = headers
        .and_then(|h| h.get(bus::names::TYPE_HEADER))
        .map(|v| v.as_str().to_string());
    let mut extra = serde_json::Map::new();
    if let Some(h) = headers {
        for (k, v) in h.iter() {
            if k.to_string() != bus::names::TYPE_HEADER {
                let v: Vec<&str> = v.iter().map(|x| x.as_str()).collect();
                extra.insert(k.to_string(), json!(v.join(",")));
            }
        }
    }
    let message = match type_name.as_deref() {
        Some(name) => match pool.get_message_by_name(name) {
            Some(desc) => match DynamicMessage::decode(desc, payload) {
                Ok(m) => {
                    serde_json::to_value(&m).unwrap_or_else(|e| json!({"error": e.to_string()}))
                }
                Err(e) => {
                    json!({"error": format!("not a valid {name}: {e}"), "bytes": payload.len()})
                }
            },
            None => json!({"error": format!("unknown type {name}"), "bytes": payload.len()}),
        },
        None => match std::str::from_utf8(payload) {
            Ok(text) => serde_json::from_str(text).unwrap_or_else(|_| json!(text)),
            Err(_) => json!({"bytes": payload.len()}),
        },
    };
    json!({
        "subject": subject,
        "type": type_name,
        "headers": extra,
        "message": message,
    })
}

/// Whether `subject` belongs to `session`: `cinema.session.{sid}.…` or its
/// Pi's `cinema.pi.{pi}.session.{sid}.…`.
pub fn in_session(subject: &str, session: &str) -> bool {
    bus::subjects::session_of(subject) == Some(session)
}

pub async fn run(args: TapArgs) -> anyhow::Result<()> {
    let pool = DescriptorPool::decode(wire::FILE_DESCRIPTOR_SET)
        .context("the built-in descriptors do not decode")?;
    let client = bus::connect_options("cinema-tap", &args.nats_url)
        .await?
        .connect(bus::server_addrs(&args.nats_url)?)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", args.nats_url))?;
    let subject = args.subject.clone();
    let mut sub = client
        .subscribe(subject.clone())
        .await
        .with_context(|| format!("cannot subscribe to {subject}"))?;
    // The server has the subscription once a round trip has come back:
    // only then is it true that nothing published from now on is missed.
    bus::round_trip(&client, std::time::Duration::from_secs(10))
        .await
        .context("the NATS server did not answer")?;
    eprintln!("cinema tap: watching {subject} on {}", args.nats_url);
    let mut out = std::io::stdout().lock();
    let mut printed = 0;
    while let Some(msg) = sub.next().await {
        if msg.subject.ends_with(".audio") && !args.audio {
            continue;
        }
        if let Some(sid) = &args.session
            && !in_session(&msg.subject, sid)
        {
            continue;
        }
        let line = describe(&pool, &msg.subject, msg.headers.as_ref(), &msg.payload);
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break; // stdout closed (| head)
        }
        printed += 1;
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Message;

    #[test]
    fn messages_are_decoded_by_their_type_header() {
        let pool = DescriptorPool::decode(wire::FILE_DESCRIPTOR_SET).expect("descriptors");
        let t = wire::v1::Transcript {
            session_id: "s1".into(),
            text: "Where is the station?".into(),
            is_final: true,
            ..Default::default()
        };
        let mut h = async_nats::HeaderMap::new();
        h.insert(bus::names::TYPE_HEADER, "cinema.v1.Transcript");
        h.insert("Nats-Msg-Id", "t-1");
        let v = describe(
            &pool,
            "cinema.session.s1.transcript",
            Some(&h),
            &t.encode_to_vec(),
        );
        assert_eq!(v["type"], "cinema.v1.Transcript");
        assert_eq!(v["message"]["text"], "Where is the station?");
        assert_eq!(v["message"]["isFinal"], true);
        assert_eq!(v["headers"]["Nats-Msg-Id"], "t-1");

        let bad = describe(&pool, "x", Some(&h), b"\xff\xff\xff");
        assert!(
            bad["message"]["error"]
                .as_str()
                .expect("error")
                .contains("not a valid")
        );
        h.insert(bus::names::TYPE_HEADER, "cinema.v1.Nope");
        let unknown = describe(&pool, "x", Some(&h), b"");
        assert!(
            unknown["message"]["error"]
                .as_str()
                .expect("error")
                .contains("unknown type")
        );
        let plain = describe(&pool, "$SRV.PING", None, br#"{"name":"llm"}"#);
        assert_eq!(plain["message"]["name"], "llm");
    }

    #[test]
    fn the_session_filter_matches_only_that_session() {
        assert!(in_session("cinema.session.s1.ended", "s1"));
        assert!(in_session("cinema.pi.pi-1.session.s1.play", "s1"));
        assert!(!in_session("cinema.pi.pi-1.session.s10.play", "s1"));
        assert!(!in_session("cinema.pi.s1.spawn", "s1"));
        assert!(!in_session("cinema.session.s10.ended", "s1"));
        assert!(!in_session("cinema.rooms.create", "s1"));
    }
}
