//! Who may publish and subscribe to what: the NATS permissions of each role,
//! written from the same subject builders the services use, so the server's
//! configuration (`cinema nats-accounts`, `nats/accounts.conf`) cannot drift
//! from the code.
//!
//! Roles: `status-store` (everything; the only writer of the status bucket),
//! `services` (the other server-side services: everything but the status
//! bucket), `gateway` (the HTTP face: no play commands, no status writes, no
//! stream deletion) and one user per Pi, confined to its own prefix.

use crate::names;
use crate::subjects::{self, SessionEvent};

/// Subject allow/deny lists of one user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permissions {
    pub publish_allow: Vec<String>,
    pub publish_deny: Vec<String>,
    pub subscribe_allow: Vec<String>,
    pub subscribe_deny: Vec<String>,
    /// May answer requests sent to it (a reply goes to the asker's inbox).
    pub allow_responses: bool,
}

/// The inbox prefix of a Pi's connections (`NATS_INBOX_PREFIX`): replies to
/// it arrive only there, and only it may subscribe there.
pub fn pi_inbox_prefix(pi_id: &str) -> String {
    format!("_INBOX_{pi_id}")
}

/// JetStream API subjects that would change the status bucket's stream.
fn status_bucket_writes() -> Vec<String> {
    let stream = format!("KV_{}", names::STATUS_BUCKET);
    let mut deny = vec![format!("$KV.{}.>", names::STATUS_BUCKET)];
    for op in ["CREATE", "UPDATE", "DELETE", "PURGE", "MSG.DELETE"] {
        deny.push(format!("$JS.API.STREAM.{op}.{stream}"));
    }
    deny
}

/// status-store: everything.
pub fn status_store() -> Permissions {
    Permissions {
        publish_allow: vec![">".into()],
        subscribe_allow: vec![">".into()],
        ..Permissions::default()
    }
}

/// room-manager, llm, stt, clip-selector: everything but the status bucket.
pub fn services() -> Permissions {
    Permissions {
        publish_allow: vec![">".into()],
        publish_deny: status_bucket_writes(),
        subscribe_allow: vec![">".into()],
        ..Permissions::default()
    }
}

/// dashboard-gateway: may not play clips, write the status bucket, or
/// delete or purge any stream.
pub fn gateway() -> Permissions {
    let mut deny = status_bucket_writes();
    deny.push(SessionEvent::Play.wildcard());
    deny.push(subjects::DELIVERY_WILDCARD.into());
    deny.push("$JS.API.STREAM.DELETE.>".into());
    deny.push("$JS.API.STREAM.PURGE.>".into());
    deny.push("$JS.API.STREAM.MSG.DELETE.>".into());
    Permissions {
        publish_allow: vec![">".into()],
        publish_deny: deny,
        subscribe_allow: vec![">".into()],
        ..Permissions::default()
    }
}

/// One Pi (its pi-spawner and the pi-clients it starts): publishes only its
/// own sessions' playback, client issues, utterances and audio, its presence
/// and its input changes; asks only to join, to fail a session and for clips;
/// hears only its own commands, joins and requests, and replies in its inbox.
pub fn pi(pi_id: &str) -> Permissions {
    let own = |event: &str| format!("cinema.pi.{pi_id}.session.*.{event}");
    let presence_stream = format!("KV_{}", names::PIS_BUCKET);
    let service_api = |service: &str| [format!("$SRV.*.{service}"), format!("$SRV.*.{service}.>")];
    let mut subscribe_allow = vec![
        // spawn, stop, devices, audio_input, audio_input_changed
        format!("{}.*", subjects::pi_group(pi_id)),
        // Play commands, handed over by room-manager (which keeps each
        // until the Pi answers that it has it).
        own("deliver"),
        own(SessionEvent::Joined.token()),
        format!("{}.>", pi_inbox_prefix(pi_id)),
        "$SRV.*".into(),
    ];
    subscribe_allow.extend(service_api(names::service::PI_SPAWNER));
    subscribe_allow.extend(service_api(names::service::PI_CLIENT));
    Permissions {
        publish_allow: vec![
            // Replies to the services' requests (spawn, stop, devices,
            // $SRV.PING…). `allow_responses` covers them on a direct
            // connection but not over a leaf connection. The services'
            // inboxes are random and a Pi may not listen to them.
            "_INBOX.>".into(),
            own(SessionEvent::Playback.token()),
            own(SessionEvent::Client.token()),
            own("utterance"),
            own("audio"),
            subjects::pi_audio_input_changed(pi_id),
            subjects::rooms::JOIN.into(),
            subjects::rooms::FAIL.into(),
            subjects::clips::GET.into(),
            format!("$KV.{}.{pi_id}", names::PIS_BUCKET),
            format!(
                "$JS.{}.API.$KV.{}.{pi_id}",
                names::JS_DOMAIN,
                names::PIS_BUCKET
            ),
            format!("$JS.API.STREAM.INFO.{presence_stream}"),
            format!("$JS.{}.API.STREAM.INFO.{presence_stream}", names::JS_DOMAIN),
        ],
        subscribe_allow,
        allow_responses: true,
        ..Permissions::default()
    }
}

/// The environment variable holding a user's password in the server config.
pub fn password_env(user: &str) -> String {
    let id: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("CINEMA_NATS_{id}_PASSWORD")
}

/// The user name of a Pi.
pub fn pi_user(pi_id: &str) -> String {
    format!("pi-{pi_id}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// NATS subject matching: `*` one token, `>` the rest.
    pub(crate) fn matches(pattern: &str, subject: &str) -> bool {
        let (mut p, mut s) = (pattern.split('.'), subject.split('.'));
        loop {
            match (p.next(), s.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    fn may_publish(p: &Permissions, subject: &str) -> bool {
        p.publish_allow.iter().any(|a| matches(a, subject))
            && !p.publish_deny.iter().any(|d| matches(d, subject))
    }

    #[test]
    fn the_gateway_is_a_browser_sessions_client_but_never_plays() {
        let g = gateway();
        let b = subjects::BROWSER;
        for subject in [
            subjects::pi_session(b, "s1", SessionEvent::Playback),
            subjects::utterance(b, "s1"),
            subjects::audio(b, "s1"),
            subjects::rooms::JOIN.to_string(),
            subjects::clips::GET.to_string(),
        ] {
            assert!(may_publish(&g, &subject), "{subject}");
        }
        assert!(!may_publish(
            &g,
            &subjects::pi_session(b, "s1", SessionEvent::Play)
        ));
        assert!(!may_publish(&g, &subjects::pi_delivery("hall-1", "s1")));
        // No Pi user can be made for the browser sessions' prefix.
        assert!(subjects::check_pi_id("pi id", b).is_err());
        assert!(subjects::check_pi_id("pi id", "hall-1").is_ok());
        let hall = pi("hall-1");
        assert!(!may_publish(&hall, &subjects::utterance(b, "s1")));
    }

    #[test]
    fn a_pi_is_confined_to_its_own_prefix() {
        let p = pi("hall-1");
        for s in p.publish_allow.iter().chain(&p.subscribe_allow) {
            let ok = s.starts_with("cinema.pi.hall-1.")
                || s == "_INBOX.>"
                || s.starts_with("_INBOX_hall-1.")
                || s.starts_with("$SRV.")
                || s == "$KV.cinema-pis.hall-1"
                || s == "$JS.cinema.API.$KV.cinema-pis.hall-1"
                || s == "$JS.API.STREAM.INFO.KV_cinema-pis"
                || s == "$JS.cinema.API.STREAM.INFO.KV_cinema-pis"
                || [
                    subjects::rooms::JOIN,
                    subjects::rooms::FAIL,
                    subjects::clips::GET,
                ]
                .contains(&s.as_str());
            assert!(ok, "{s}");
        }
        assert!(!p.publish_allow.iter().any(|s| s.ends_with(".play")));
        assert!(!p.publish_allow.iter().any(|s| s.ends_with(".deliver")));
        assert!(!p.subscribe_allow.iter().any(|s| s.starts_with("_INBOX.")));
        assert_eq!(
            password_env(&pi_user("hall-1")),
            "CINEMA_NATS_PI_HALL_1_PASSWORD"
        );
    }
}
