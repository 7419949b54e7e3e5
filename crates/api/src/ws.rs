//! The WebSocket frames of `GET /ws` (API.md section 7), JSON text both ways.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::ErrorBody;

/// A frame the client sends, tagged by `action`.
///
/// ```
/// use nexus_api::ws::ClientFrame;
/// let frame: ClientFrame = serde_json::from_str(
///     r#"{"action": "subscribe", "events": ["PAYMENT_RECEIVED", "MINT_*"], "since": 41}"#)?;
/// assert_eq!(frame, ClientFrame::Subscribe { events: vec!["PAYMENT_RECEIVED".into(), "MINT_*".into()], since: Some(41) });
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ClientFrame {
    /// `{"action": "subscribe", "events": [...], "since"?: <sequence>}`.
    Subscribe {
        /// Type globs.
        events: Vec<String>,
        /// Resume: first every stored matching event after this sequence, then live ones.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// `{"action": "unsubscribe", "events": [...]}`.
    Unsubscribe {
        /// Type globs subscribed before.
        events: Vec<String>,
    },
    /// `{"action": "ping"}`; answered with a pong frame.
    Ping,
}

impl ClientFrame {
    /// Every `action` there is; any other is answered `BAD_REQUEST`.
    pub const ACTIONS: &'static [&'static str] = &["subscribe", "unsubscribe", "ping"];
}

/// A frame the server sends. The variants have no tag: each is told by its one distinctive key
/// (`event`, `ack`, `pong`, `error`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServerFrame {
    /// An event.
    Event(EventFrame),
    /// A subscription or unsubscription took effect.
    Ack(AckFrame),
    /// The answer to a ping.
    Pong(PongFrame),
    /// Something the client sent was refused.
    Error(ErrorFrame),
}

/// `{"event": "<type>", "id", "sequence", "payload", "timestamp": <unix ms>}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    /// The event's type.
    #[serde(rename = "event")]
    pub event_type: String,
    /// The event's id.
    pub id: String,
    /// Its place in the log.
    pub sequence: u64,
    /// Its payload (any JSON value, `null` included).
    #[serde(default)]
    pub payload: Value,
    /// When Nexus accepted it, Unix milliseconds.
    #[serde(rename = "timestamp")]
    pub timestamp_ms: i64,
}

impl From<&nexus_event::Event> for EventFrame {
    fn from(e: &nexus_event::Event) -> Self {
        EventFrame {
            event_type: e.event_type.to_string(),
            id: e.id.to_string(),
            sequence: e.sequence,
            payload: e.payload.clone(),
            timestamp_ms: e.time.as_unix_millis(),
        }
    }
}

/// What an ack acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckKind {
    /// A subscribe frame.
    Subscribe,
    /// An unsubscribe frame.
    Unsubscribe,
}

/// `{"ack": "subscribe" | "unsubscribe", "events": [...]}`: the patterns that took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckFrame {
    /// What it acknowledges.
    pub ack: AckKind,
    /// The patterns.
    pub events: Vec<String>,
}

/// `{"pong": <unix ms>}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PongFrame {
    /// The server's clock, Unix milliseconds.
    pub pong: i64,
}

/// `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// What went wrong.
    pub error: ErrorBody,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::ErrorCode;
    use serde_json::json;

    #[test]
    fn client_frames_round_trip() {
        for (body, frame) in [
            (
                json!({"action": "subscribe", "events": ["PAYMENT_RECEIVED", "MINT_*"]}),
                ClientFrame::Subscribe {
                    events: vec!["PAYMENT_RECEIVED".into(), "MINT_*".into()],
                    since: None,
                },
            ),
            (
                json!({"action": "subscribe", "events": ["*"], "since": 2}),
                ClientFrame::Subscribe {
                    events: vec!["*".into()],
                    since: Some(2),
                },
            ),
            (
                json!({"action": "unsubscribe", "events": ["PAYMENT_*"]}),
                ClientFrame::Unsubscribe {
                    events: vec!["PAYMENT_*".into()],
                },
            ),
            (json!({"action": "ping"}), ClientFrame::Ping),
        ] {
            assert_eq!(
                serde_json::from_value::<ClientFrame>(body.clone()).expect("frame"),
                frame
            );
            assert_eq!(serde_json::to_value(&frame).expect("ser"), body);
        }
        assert!(serde_json::from_value::<ClientFrame>(json!({"action": "dance"})).is_err());
    }

    #[test]
    fn server_frames_round_trip() {
        let event = json!({"event": "PAYMENT_RECEIVED", "id": "pay-1", "sequence": 42,
            "payload": {"amount": 5}, "timestamp": 1_770_669_000_123_i64});
        let ack = json!({"ack": "subscribe", "events": ["PAYMENT_*"]});
        let pong = json!({"pong": 1_770_669_000_123_i64});
        let error =
            json!({"error": {"code": "FORBIDDEN", "message": "outside this token's scope: *"}});
        let parsed: Vec<ServerFrame> = [&event, &ack, &pong, &error]
            .into_iter()
            .map(|v| serde_json::from_value(v.clone()).expect("frame"))
            .collect();
        assert!(matches!(&parsed[0], ServerFrame::Event(e) if e.sequence == 42));
        assert!(matches!(&parsed[1], ServerFrame::Ack(a) if a.ack == AckKind::Subscribe));
        assert!(matches!(&parsed[2], ServerFrame::Pong(_)));
        assert!(
            matches!(&parsed[3], ServerFrame::Error(e) if e.error.code == ErrorCode::Forbidden)
        );
        for (frame, body) in parsed.iter().zip([&event, &ack, &pong, &error]) {
            assert_eq!(&serde_json::to_value(frame).expect("ser"), body);
        }
        let null = json!({"event": "T", "id": "n", "sequence": 1, "payload": null, "timestamp": 1});
        let ServerFrame::Event(e) = serde_json::from_value(null.clone()).expect("null payload")
        else {
            panic!("an event frame");
        };
        assert_eq!(e.payload, Value::Null);
        assert_eq!(
            serde_json::to_value(ServerFrame::Event(e)).expect("ser"),
            null
        );
    }
}
