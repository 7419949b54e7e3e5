//! `GET /asyncapi.json`: an AsyncAPI 3.0.0 document of the event-type catalogue (API.md
//! section 11), written from the Nexus point of view (`send` is what Nexus sends, `receive` what
//! it takes in).
//!
//! - One channel per declared type: its id and `address` are the type's name, and it holds one
//!   message of the same name whose `payload` is the type's JSON Schema (draft 2020-12, as a
//!   multi-format schema with `schemaFormat: application/schema+json;version=2020-12`), with
//!   the type's examples. A deprecated type's message is `deprecated: true` and its channel and
//!   message carry the tag `deprecated`.
//! - Two operations per type: `<type>.webhook`, the signed `POST` to every subscription whose
//!   globs match (section 4; the HTTP message binding lists the delivery headers), and
//!   `<type>.websocket`, the event frame to every WebSocket client subscribed to a matching
//!   pattern (section 7).
//! - The WebSocket channel (id and address `/ws`, referenced as `#/channels/~1ws`): the client frames (`subscribe`, `unsubscribe`, `ping`) as
//!   `receive` operations whose replies are the server's `ack`, `pong` and `error` frames.
//! - `components.schemas`: the envelopes the payload travels in: `WebhookEvent` (the body of a
//!   delivery, section 1) and `WsEventFrame` (section 7).
//!
//! It reads nothing: the caller passes the catalogue's types.

use nexus_api::event_types::EventType;
use serde_json::{Map, Value, json};

/// The `schemaFormat` of a JSON Schema draft 2020-12 in an AsyncAPI multi-format schema
/// object.
pub const SCHEMA_FORMAT: &str = "application/schema+json;version=2020-12";

/// The AsyncAPI version of the document.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// What the document says about the server itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Info<'a> {
    /// The server's version (`info.version`).
    pub version: &'a str,
    /// The base URL clients reach the server at (`http://host:port` or `https://host:port`,
    /// with an optional path prefix). When given, the document names it as its `ws`/`wss`
    /// server; `None` leaves `servers` out (a tool then asks for one).
    pub base_url: Option<&'a str>,
}

/// The document for these types, in the order given (the catalogue lists them by name).
pub fn document(types: &[EventType], info: Info<'_>) -> Value {
    let mut channels = Map::new();
    let mut operations = Map::new();
    for t in types {
        channels.insert(t.name.clone(), type_channel(t));
        let channel = json!({ "$ref": format!("#/channels/{}", t.name) });
        let message = json!({ "$ref": format!("#/channels/{0}/messages/{0}", t.name) });
        operations.insert(
            format!("{}.webhook", t.name),
            json!({
                "action": "send",
                "channel": channel,
                "messages": [message],
                "title": format!("Deliver {} to webhooks", t.name),
                "summary": "A signed POST of the event to every enabled subscription whose events globs match the type.",
                "description": WEBHOOK_DESCRIPTION,
                "bindings": { "http": { "method": "POST", "bindingVersion": "0.3.0" } },
            }),
        );
        operations.insert(
            format!("{}.websocket", t.name),
            json!({
                "action": "send",
                "channel": channel,
                "messages": [message],
                "title": format!("Stream {} to WebSocket clients", t.name),
                "summary": "An event frame to every /ws connection subscribed to a matching pattern.",
                "description": "The frame is `{\"event\": <type>, \"id\", \"sequence\", \"payload\", \"timestamp\": <unix ms>}` (components.schemas.WsEventFrame) on the `/ws` channel's connection; its `payload` is this message's payload. With `since`, stored events after that sequence come first, then live ones, with no gap and no duplicate.",
            }),
        );
    }
    channels.insert(WS_CHANNEL.to_owned(), ws_channel());
    for (id, frame, replies, summary) in [
        (
            "ws.subscribe",
            "subscribe",
            &["ack", "error"][..],
            "Subscribe to type patterns, optionally replaying from a sequence; acked, or an error frame (FORBIDDEN) naming the patterns outside the token's scope.",
        ),
        (
            "ws.unsubscribe",
            "unsubscribe",
            &["ack", "error"][..],
            "Stop receiving events of these patterns; acked.",
        ),
        (
            "ws.ping",
            "ping",
            &["pong"][..],
            "An application-level ping; answered with a pong frame.",
        ),
    ] {
        let message =
            |name: &str| json!({ "$ref": format!("#/channels/{WS_REF}/messages/{name}") });
        operations.insert(
            id.to_owned(),
            json!({
                "action": "receive",
                "channel": { "$ref": format!("#/channels/{WS_REF}") },
                "messages": [message(frame)],
                "summary": summary,
                "reply": {
                    "channel": { "$ref": format!("#/channels/{WS_REF}") },
                    "messages": replies.iter().map(|r| message(r)).collect::<Vec<_>>(),
                },
            }),
        );
    }
    let mut doc = json!({
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Nexus events",
            "version": info.version,
            "description": "The declared event types of this Nexus gateway (GET /api/event-types), how they are delivered to webhook subscriptions (signed POST, Standard Webhooks headers) and streamed over the WebSocket at /ws. Undeclared types are delivered the same way, without a schema.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {
                "WebhookEvent": webhook_event(),
                "WsEventFrame": ws_event_frame(),
            },
            "securitySchemes": {
                "token": { "type": "httpApiKey", "name": "token", "in": "query",
                    "description": "The admin token or a subscriber token from the config (or `Authorization: Bearer <token>` on the upgrade request)." },
            },
        },
    });
    if let Some((host, protocol, pathname)) = info.base_url.and_then(server_of) {
        let mut server = json!({
            "host": host,
            "protocol": protocol,
            "title": "This Nexus server",
            "security": [{ "$ref": "#/components/securitySchemes/token" }],
        });
        if !pathname.is_empty() {
            server["pathname"] = Value::String(pathname);
        }
        doc["servers"] = json!({ "nexus": server });
        doc["channels"][WS_CHANNEL]["servers"] = json!([{ "$ref": "#/servers/nexus" }]);
    }
    doc
}

/// The id of the WebSocket channel: its path, which no type name can be (a type has no `/`).
pub const WS_CHANNEL: &str = "/ws";
/// [`WS_CHANNEL`] as a JSON pointer token.
const WS_REF: &str = "~1ws";

const WEBHOOK_DESCRIPTION: &str = "The request body is the event as stored (components.schemas.WebhookEvent: `{id, type, source, sequence, time, payload, correlation_id?}`); its `payload` is this message's payload. Headers: `webhook-id` (the event id), `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 over \"<id>.<timestamp>.<body>\">` with the subscription's secret (a `whsec_` secret is used as its decoded bytes), `X-Nexus-Event` and `X-Nexus-Sequence`. Any 2xx is success; anything else, a timeout or a refused connection is retried (2, 4, 8, 16, 32 s by default) and then dead-lettered; `410 Gone` disables the subscription. Delivery is at least once: deduplicate by `webhook-id`.";

/// `http://host[:port][/prefix]` -> (`host[:port]`, `ws` | `wss`, `/prefix/ws`-less pathname).
fn server_of(base: &str) -> Option<(String, &'static str, String)> {
    let base = base.trim().trim_end_matches('/');
    let (protocol, rest) = if let Some(rest) = base.strip_prefix("https://") {
        ("wss", rest)
    } else {
        ("ws", base.strip_prefix("http://")?)
    };
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    (!host.is_empty()).then(|| (host.to_owned(), protocol, path.to_owned()))
}

fn type_channel(t: &EventType) -> Value {
    let mut message = json!({
        "name": t.name,
        "title": t.name,
        "contentType": "application/json",
        "payload": {
            "schemaFormat": SCHEMA_FORMAT,
            "schema": t.schema.clone().unwrap_or_else(|| json!({
                "description": "Any JSON value: the type declares no schema."
            })),
        },
        "bindings": { "http": { "headers": delivery_headers(&t.name), "bindingVersion": "0.3.0" } },
    });
    if !t.description.is_empty() {
        message["summary"] = Value::String(t.description.clone());
    }
    if !t.examples.is_empty() {
        message["examples"] = t
            .examples
            .iter()
            .enumerate()
            .map(|(i, payload)| json!({ "name": format!("{}-{}", t.name, i + 1), "payload": payload }))
            .collect();
    }
    let mut channel = json!({
        "address": t.name,
        "title": t.name,
        "messages": { t.name.clone(): message },
    });
    if !t.description.is_empty() {
        channel["description"] = Value::String(t.description.clone());
    }
    if t.deprecated {
        let tag = json!([{ "name": "deprecated",
            "description": "Still accepted; publishing it answers with `Deprecation: true`." }]);
        channel["tags"] = tag.clone();
        let message = &mut channel["messages"][&t.name];
        message["deprecated"] = Value::Bool(true);
        message["tags"] = tag;
    }
    channel
}

/// The headers of a webhook delivery (section 4) of events of type `name`.
fn delivery_headers(name: &str) -> Value {
    json!({
        "type": "object",
        "required": ["webhook-id", "webhook-timestamp", "webhook-signature", "X-Nexus-Event", "X-Nexus-Sequence"],
        "properties": {
            "content-type": { "type": "string", "const": "application/json" },
            "webhook-id": { "type": "string", "description": "The event id: deduplicate by it." },
            "webhook-timestamp": { "type": "string", "pattern": "^[0-9]+$",
                "description": "Unix seconds of the attempt." },
            "webhook-signature": { "type": "string", "pattern": "^v1,",
                "description": "v1,<base64 HMAC-SHA256 over \"<webhook-id>.<webhook-timestamp>.<body>\"> with the subscription's secret." },
            "X-Nexus-Event": { "type": "string", "const": name },
            "X-Nexus-Sequence": { "type": "string", "pattern": "^[0-9]+$",
                "description": "The event's sequence in the log." },
        },
    })
}

/// The body of a webhook delivery: the event as stored (section 1).
fn webhook_event() -> Value {
    json!({
        "type": "object",
        "required": ["id", "type", "source", "sequence", "time", "payload"],
        "properties": {
            "id": { "type": "string" },
            "type": { "type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$" },
            "source": { "type": "string", "description": "The publishing node; `nexus` for events emitted by reactors." },
            "sequence": { "type": "integer", "minimum": 1 },
            "time": { "type": "string", "format": "date-time" },
            "payload": { "description": "The payload: valid against the type's schema." },
            "correlation_id": { "type": "string" },
        },
    })
}

/// A server frame carrying an event (section 7).
fn ws_event_frame() -> Value {
    json!({
        "type": "object",
        "required": ["event", "id", "sequence", "payload", "timestamp"],
        "properties": {
            "event": { "type": "string", "description": "The event type." },
            "id": { "type": "string" },
            "sequence": { "type": "integer", "minimum": 1 },
            "payload": { "description": "The payload: valid against the type's schema." },
            "timestamp": { "type": "integer", "description": "The event's time in Unix milliseconds." },
        },
    })
}

fn patterns() -> Value {
    json!({ "type": "array", "items": { "type": "string" },
        "description": "Type globs such as PAYMENT_RECEIVED or MINT_*." })
}

fn frame(name: &str, summary: &str, payload: Value) -> Value {
    json!({ "name": name, "title": name, "summary": summary, "contentType": "application/json",
        "payload": payload })
}

fn ws_channel() -> Value {
    let subscribe = frame(
        "subscribe",
        "Client frame: subscribe to patterns; with `since`, stored events after that sequence are sent first.",
        json!({ "type": "object", "required": ["action", "events"], "properties": {
            "action": { "type": "string", "const": "subscribe" },
            "events": patterns(),
            "since": { "type": "integer", "minimum": 0 } } }),
    );
    let unsubscribe = frame(
        "unsubscribe",
        "Client frame: stop receiving these patterns.",
        json!({ "type": "object", "required": ["action", "events"], "properties": {
            "action": { "type": "string", "const": "unsubscribe" }, "events": patterns() } }),
    );
    let ping = frame(
        "ping",
        "Client frame: application-level ping.",
        json!({ "type": "object", "required": ["action"], "properties": {
            "action": { "type": "string", "const": "ping" } } }),
    );
    let ack = frame(
        "ack",
        "Server frame: the patterns subscribed or unsubscribed.",
        json!({ "type": "object", "required": ["ack", "events"], "properties": {
            "ack": { "type": "string", "enum": ["subscribe", "unsubscribe"] },
            "events": patterns() } }),
    );
    let pong = frame(
        "pong",
        "Server frame: the answer to a ping.",
        json!({ "type": "object", "required": ["pong"], "properties": {
            "pong": { "type": "integer", "description": "Server time in Unix milliseconds." } } }),
    );
    let error = frame(
        "error",
        "Server frame: a frame was refused (FORBIDDEN for patterns outside the token's scope, BAD_REQUEST for a frame that is not understood).",
        json!({ "type": "object", "required": ["error"], "properties": {
            "error": { "type": "object", "required": ["code", "message"], "properties": {
                "code": { "type": "string" }, "message": { "type": "string" } } } } }),
    );
    json!({
        "address": "/ws",
        "title": "WebSocket",
        "description": "One connection per client (`GET /ws`, authenticated with `Authorization: Bearer <token>` or `?token=`; a missing or wrong token is refused with 401 at the upgrade). Besides the frames below, the server sends the event frames of the declared types' `<type>.websocket` operations (components.schemas.WsEventFrame). The server pings every 30 s and closes a connection silent for 10 s; a client too slow for its buffer is closed with code 1013 and resumes with `since`.",
        "messages": {
            "subscribe": subscribe,
            "unsubscribe": unsubscribe,
            "ping": ping,
            "ack": ack,
            "pong": pong,
            "error": error,
        },
        "bindings": { "ws": {
            "method": "GET",
            "query": { "type": "object", "properties": {
                "token": { "type": "string", "description": "The admin token or a subscriber token." } } },
            "headers": { "type": "object", "properties": {
                "Authorization": { "type": "string", "description": "Bearer <token>, instead of ?token=." } } },
            "bindingVersion": "0.1.0",
        } },
    })
}

/// `GET /asyncapi.json` (no token): the document of the catalogue as this instance holds it in
/// memory. Its server is the one the caller reached: the request's `Host`, over `wss` when
/// `X-Forwarded-Proto` says `https` (a TLS proxy in front), else `ws`.
pub(crate) async fn serve(
    axum::extract::State(state): axum::extract::State<crate::app::AppState>,
    headers: axum::http::HeaderMap,
) -> axum::Json<Value> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = match header("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let base = header("host")
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .map(|h| format!("{scheme}://{h}"));
    let types = state.catalog().declared();
    axum::Json(document(
        &types,
        Info {
            version: &state.config.version,
            base_url: base.as_deref(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use jsonschema::{Draft, Retrieve, Uri, Validator};
    use nexus_event::Timestamp;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/asyncapi-3.0.0.json"
    );

    /// Refuses every fetch and remembers what was asked, so a schema that is not self-contained
    /// fails to compile instead of reaching the network.
    #[derive(Default)]
    struct Offline(Mutex<Vec<String>>);

    impl Retrieve for &'static Offline {
        fn retrieve(
            &self,
            uri: &Uri<String>,
        ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
            self.0.lock().expect("lock").push(uri.as_str().to_owned());
            Err(format!("no network in the tests: {}", uri.as_str()).into())
        }
    }

    fn fixture() -> Value {
        let text = std::fs::read_to_string(FIXTURE).expect("the AsyncAPI 3.0.0 schema fixture");
        serde_json::from_str(&text).expect("the fixture is JSON")
    }

    fn official() -> Validator {
        static OFFLINE: std::sync::OnceLock<Offline> = std::sync::OnceLock::new();
        let offline = OFFLINE.get_or_init(Offline::default);
        let validator = jsonschema::options()
            .with_draft(Draft::Draft7)
            .with_retriever(offline)
            .build(&fixture())
            .expect("the official schema compiles offline");
        let asked = offline.0.lock().expect("lock").clone();
        assert!(asked.is_empty(), "the schema wanted to fetch {asked:?}");
        validator
    }

    fn errors(validator: &Validator, doc: &Value) -> Vec<String> {
        validator
            .iter_errors(doc)
            .map(|e| format!("{} at {:?}", e, e.instance_path().as_str()))
            .collect()
    }

    fn assert_valid(validator: &Validator, doc: &Value) {
        let errors = errors(validator, doc);
        assert!(errors.is_empty(), "{errors:#?}");
    }

    fn declared(
        name: &str,
        schema: Option<Value>,
        examples: Vec<Value>,
        deprecated: bool,
    ) -> EventType {
        let now = Timestamp::now();
        EventType {
            name: name.to_owned(),
            description: format!("{name}, as the tests declare it"),
            schema,
            examples,
            deprecated,
            created_at: now,
            updated_at: now,
        }
    }

    fn catalogue() -> Vec<EventType> {
        let payment = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["order", "amount"],
            "properties": {
                "order": { "type": "string" },
                "amount": { "type": "integer", "minimum": 1 },
                "currency": { "enum": ["EUR", "USD"] },
            },
        });
        vec![
            declared(
                "PAYMENT_RECEIVED",
                Some(payment),
                vec![
                    json!({ "order": "o-1", "amount": 2500, "currency": "EUR" }),
                    json!({ "order": "o-2", "amount": 1 }),
                ],
                false,
            ),
            declared(
                "legacy.order:v1",
                Some(json!(true)),
                vec![json!("anything")],
                true,
            ),
            EventType {
                description: String::new(),
                ..declared("ws", None, vec![], false)
            },
        ]
    }

    /// Every `$ref` of `value`, with where it is.
    fn refs<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push((at.clone(), r));
                }
                for (k, v) in map {
                    refs(v, format!("{at}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    refs(v, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_ref_of_the_official_schema_names_a_definition_it_embeds() {
        let schema = fixture();
        assert_eq!(
            schema["$id"],
            "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
        );
        assert_eq!(schema["properties"]["asyncapi"]["const"], "3.0.0");
        let ids: BTreeSet<&str> = schema["definitions"]
            .as_object()
            .expect("definitions")
            .values()
            .filter_map(|d| d["$id"].as_str())
            .chain(schema["$id"].as_str())
            .collect();
        let mut found = Vec::new();
        refs(&schema, String::new(), &mut found);
        let external: Vec<_> = found
            .iter()
            // Refs inside `examples` are sample AsyncAPI documents, not refs of the schema.
            .filter(|(at, r)| !at.contains("/examples/") && !r.starts_with('#'))
            .collect();
        assert!(
            external.len() > 100,
            "the bundled schema refers by $id: {}",
            external.len()
        );
        for (at, r) in external {
            let base = r.split('#').next().unwrap_or(r);
            assert!(ids.contains(base), "{at}: {r} is not embedded");
        }
    }

    #[test]
    fn the_document_validates_against_the_official_asyncapi_3_schema() {
        let validator = official();
        let doc = document(
            &catalogue(),
            Info {
                version: "1.2.3",
                base_url: None,
            },
        );
        assert_valid(&validator, &doc);
        assert_eq!(doc["asyncapi"], "3.0.0");
        assert!(doc.get("servers").is_none());

        let empty = document(
            &[],
            Info {
                version: "1.2.3",
                base_url: None,
            },
        );
        assert_valid(&validator, &empty);
        let channels: Vec<&String> = empty["channels"]
            .as_object()
            .expect("channels")
            .keys()
            .collect();
        assert_eq!(channels, [WS_CHANNEL], "only the WebSocket channel");

        let served = document(
            &catalogue(),
            Info {
                version: "1.2.3",
                base_url: Some("https://nexus.example:8443/gw/"),
            },
        );
        assert_valid(&validator, &served);
        assert_eq!(
            served["servers"]["nexus"],
            json!({ "host": "nexus.example:8443", "protocol": "wss", "pathname": "/gw",
                "title": "This Nexus server",
                "security": [{ "$ref": "#/components/securitySchemes/token" }] })
        );
        let plain = document(
            &[],
            Info {
                version: "1",
                base_url: Some("http://127.0.0.1:3000"),
            },
        );
        assert_valid(&validator, &plain);
        assert_eq!(plain["servers"]["nexus"]["protocol"], "ws");
        assert!(plain["servers"]["nexus"].get("pathname").is_none());
        let unusable = document(
            &[],
            Info {
                version: "1",
                base_url: Some("ftp://x"),
            },
        );
        assert!(unusable.get("servers").is_none());
    }

    #[test]
    fn broken_documents_fail_the_official_schema() {
        let validator = official();
        let good = document(
            &catalogue(),
            Info {
                version: "1",
                base_url: None,
            },
        );
        let broken = |f: fn(&mut Value)| {
            let mut doc = good.clone();
            f(&mut doc);
            errors(&validator, &doc)
        };
        let cases: [(&str, Change); 6] = [
            ("a channel address that is not a string", |d| {
                d["channels"]["PAYMENT_RECEIVED"]["address"] = json!(42)
            }),
            ("an operation with a bad action", |d| {
                d["operations"]["PAYMENT_RECEIVED.webhook"]["action"] = json!("publish")
            }),
            ("an operation without a channel", |d| {
                d["operations"]["ws.ping"]
                    .as_object_mut()
                    .expect("op")
                    .remove("channel");
            }),
            ("a wrong AsyncAPI version", |d| {
                d["asyncapi"] = json!("2.6.0")
            }),
            ("info without a version", |d| {
                d["info"].as_object_mut().expect("info").remove("version");
            }),
            ("an unknown key in a message", |d| {
                d["channels"]["PAYMENT_RECEIVED"]["messages"]["PAYMENT_RECEIVED"]["shape"] =
                    json!(1)
            }),
        ];
        for (what, change) in cases {
            assert!(
                !broken(change).is_empty(),
                "{what} passed the official schema"
            );
        }
    }

    /// A change that breaks a document.
    type Change = fn(&mut Value);

    /// Resolves a local `$ref` (`#/a/b~1c`) in `doc`.
    fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
        doc.pointer(r.strip_prefix('#')?)
    }

    #[test]
    fn the_channels_are_the_catalogue() {
        let types = catalogue();
        let doc = document(
            &types,
            Info {
                version: "1",
                base_url: None,
            },
        );
        let channels = doc["channels"].as_object().expect("channels");
        let mut names: Vec<&str> = channels.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [WS_CHANNEL, "PAYMENT_RECEIVED", "legacy.order:v1", "ws"]
        );
        for t in &types {
            let channel = &channels[&t.name];
            assert_eq!(channel["address"], t.name.as_str());
            let messages = channel["messages"].as_object().expect("messages");
            assert_eq!(messages.len(), 1, "{}", t.name);
            let message = &messages[&t.name];
            assert_eq!(message["payload"]["schemaFormat"], SCHEMA_FORMAT);
            match &t.schema {
                Some(schema) => assert_eq!(&message["payload"]["schema"], schema),
                None => assert!(message["payload"]["schema"]["type"].is_null(), "any value"),
            }
            let examples: Vec<&Value> = message["examples"]
                .as_array()
                .map(|e| e.iter().map(|x| &x["payload"]).collect())
                .unwrap_or_default();
            assert_eq!(
                examples,
                t.examples.iter().collect::<Vec<_>>(),
                "{}",
                t.name
            );
            assert_eq!(
                message["deprecated"].as_bool().unwrap_or(false),
                t.deprecated
            );
            assert_eq!(channel["tags"].is_array(), t.deprecated, "{}", t.name);
            assert_eq!(
                message["bindings"]["http"]["headers"]["properties"]["X-Nexus-Event"]["const"],
                t.name.as_str()
            );
            let webhook = &doc["operations"][format!("{}.webhook", t.name)];
            assert_eq!(webhook["action"], "send");
            assert_eq!(webhook["bindings"]["http"]["method"], "POST");
            let ws = &doc["operations"][format!("{}.websocket", t.name)];
            assert_eq!(ws["action"], "send");
            for op in [webhook, ws] {
                let channel = op["channel"]["$ref"].as_str().expect("a ref");
                assert_eq!(resolve(&doc, channel), Some(&channels[&t.name]));
            }
        }
        assert_eq!(
            channels["PAYMENT_RECEIVED"]["messages"]["PAYMENT_RECEIVED"]["examples"][1]["name"],
            "PAYMENT_RECEIVED-2"
        );
        assert!(
            channels["ws"].get("description").is_none(),
            "an empty description is left out"
        );
        // Every local ref of the document points at something in it.
        let mut found = Vec::new();
        refs(&doc, String::new(), &mut found);
        assert!(found.len() > 20);
        for (at, r) in found {
            assert!(resolve(&doc, r).is_some(), "{at}: {r} resolves to nothing");
        }
        let frames = |op: &str, key: &str| -> Vec<String> {
            doc["operations"][op][key]["messages"]
                .as_array()
                .or_else(|| {
                    doc["operations"][op]["messages"]
                        .as_array()
                        .filter(|_| key.is_empty())
                })
                .expect("messages")
                .iter()
                .map(|m| {
                    resolve(&doc, m["$ref"].as_str().expect("ref")).expect("resolves")["name"]
                        .as_str()
                        .expect("name")
                        .to_owned()
                })
                .collect()
        };
        assert_eq!(frames("ws.subscribe", ""), ["subscribe"]);
        assert_eq!(frames("ws.subscribe", "reply"), ["ack", "error"]);
        assert_eq!(frames("ws.ping", "reply"), ["pong"]);
        assert_eq!(doc["operations"]["ws.unsubscribe"]["action"], "receive");
    }
}
