//! `GET /api/reactors`: the configured reactors (API.md section 10), read only and never with
//! their secrets. What the operator console's "Nodes and reactors" page lists.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A reactor: IF an event of type `on` whose payload passes `when` THEN `call`, THEN emit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reactor {
    /// Its unique name (the `reactor` of its deliveries and dead letters).
    pub name: String,
    /// The type glob it reacts to.
    pub on: String,
    /// Conditions on the payload, JSON pointer to tests (`{}` for none), as in the config file.
    pub when: Map<String, Value>,
    /// The HTTP call it makes.
    pub call: ReactorCall,
    /// The type emitted after a successful call, `null` for none.
    pub emit_on_success: Option<String>,
    /// The type emitted once the call is dead-lettered, `null` for none.
    pub emit_on_failure: Option<String>,
}

/// The HTTP call of a reactor, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactorCall {
    /// `POST`, `PUT` or `PATCH`.
    pub method: String,
    /// The URL, without any user information (`user:password@`) it was configured with.
    pub url: String,
    /// The call's timeout in milliseconds.
    pub timeout_ms: u64,
}

/// `url` without the `user:password@` part of its authority, the only place a URL may carry a
/// credential that is not the target's business (a query string is the target's own).
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://{}{tail}", &authority[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reactors_round_trip() {
        let body = json!({"name": "mint-on-payment", "on": "PAYMENT_RECEIVED",
            "when": {"/amount": {"gte": 1}},
            "call": {"method": "POST", "url": "http://127.0.0.1:4000/mint", "timeoutMs": 10000},
            "emitOnSuccess": "MINT_REQUESTED", "emitOnFailure": null});
        let r: Reactor = serde_json::from_value(body.clone()).expect("reactor");
        assert_eq!(serde_json::to_value(&r).expect("ser"), body);
        assert_eq!(r.call.timeout_ms, 10_000);
    }

    #[test]
    fn credentials_leave_the_url() {
        for (url, shown) in [
            (
                "https://user:pw@hooks.example/a?b=c",
                "https://hooks.example/a?b=c",
            ),
            ("http://tok@127.0.0.1:4000", "http://127.0.0.1:4000"),
            ("http://127.0.0.1:4000/x@y", "http://127.0.0.1:4000/x@y"),
            (
                "https://hooks.example/p?q=a@b",
                "https://hooks.example/p?q=a@b",
            ),
            ("not a url", "not a url"),
        ] {
            assert_eq!(without_userinfo(url), shown, "{url}");
        }
    }
}
