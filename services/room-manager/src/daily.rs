//! The optional Daily.co backend over its REST API: a room with an expiry and
//! a meeting token per session, deleted when the session ends; expired rooms
//! swept. Audio still travels over NATS (there is no public Rust SDK for
//! Daily's media), so the room is the session's public face, not its transport.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

/// Rooms this project creates carry this prefix, so the sweep never touches others.
pub const ROOM_PREFIX: &str = "cinema-";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Daily.co {op}: HTTP {status}: {info}")]
    Api {
        op: &'static str,
        status: u16,
        info: String,
    },
    #[error("Daily.co {op}: {source}")]
    Http {
        op: &'static str,
        #[source]
        source: reqwest::Error,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Room {
    pub name: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub config: RoomConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoomConfig {
    #[serde(default)]
    pub exp: Option<i64>,
}

#[derive(Clone)]
pub struct Daily {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Daily {
    pub fn new(base: &str, key: &str) -> Daily {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Daily {
            http,
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
        }
    }

    async fn send(
        &self,
        op: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, Error> {
        let resp = req
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|source| Error::Http { op, source })?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if status.is_success() {
            return Ok(body);
        }
        let info = body
            .get("info")
            .or_else(|| body.get("error"))
            .and_then(|v| v.as_str())
            .unwrap_or("no detail")
            .to_string();
        Err(Error::Api {
            op,
            status: status.as_u16(),
            info,
        })
    }

    /// Creates a private room that expires (and ejects everyone) at `exp_s`.
    pub async fn create_room(&self, name: &str, exp_s: i64) -> Result<Room, Error> {
        let body = json!({
            "name": name,
            "privacy": "private",
            "properties": { "exp": exp_s, "eject_at_room_exp": true },
        });
        let v = self
            .send(
                "create room",
                self.http.post(format!("{}/rooms", self.base)).json(&body),
            )
            .await?;
        serde_json::from_value(v).map_err(|e| Error::Api {
            op: "create room",
            status: 200,
            info: format!("unexpected reply: {e}"),
        })
    }

    /// A meeting token for `room`, valid until `exp_s`.
    pub async fn meeting_token(&self, room: &str, exp_s: i64) -> Result<String, Error> {
        let body = json!({ "properties": { "room_name": room, "exp": exp_s, "is_owner": false } });
        let v = self
            .send(
                "create meeting token",
                self.http
                    .post(format!("{}/meeting-tokens", self.base))
                    .json(&body),
            )
            .await?;
        v.get("token")
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| Error::Api {
                op: "create meeting token",
                status: 200,
                info: "reply has no token".into(),
            })
    }

    /// Deletes a room; a room that is already gone is fine.
    pub async fn delete_room(&self, name: &str) -> Result<(), Error> {
        match self
            .send(
                "delete room",
                self.http.delete(format!("{}/rooms/{name}", self.base)),
            )
            .await
        {
            Err(Error::Api { status: 404, .. }) | Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// This project's rooms.
    pub async fn list_rooms(&self) -> Result<Vec<Room>, Error> {
        let v = self
            .send(
                "list rooms",
                self.http.get(format!("{}/rooms?limit=100", self.base)),
            )
            .await?;
        let rooms: Vec<Room> = v
            .get("data")
            .and_then(|d| serde_json::from_value(d.clone()).ok())
            .unwrap_or_default();
        Ok(rooms
            .into_iter()
            .filter(|r| r.name.starts_with(ROOM_PREFIX))
            .collect())
    }
}
