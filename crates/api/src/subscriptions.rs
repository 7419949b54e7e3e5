//! Webhook subscriptions (API.md sections 4, 6 and 12): the creation and patch bodies, and the
//! subscription as the admin API shows it.

use std::fmt;

use nexus_event::{Timestamp, When};
use serde::{Deserialize, Deserializer, Serialize};

/// `POST /api/subscriptions`: `{"url", "events", "secret"?, "ordered"?, "filter"?}`; unknown keys
/// are refused, and so is a filter that is not a valid condition object (API.md section 12).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// Where events go.
    pub url: String,
    /// The type globs it takes (at least one).
    pub events: Vec<String>,
    /// Its signing secret; the server generates a `whsec_` one when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Strict sequence order. Default `false`.
    #[serde(default)]
    pub ordered: bool,
    /// Conditions on the payload an event must meet to be delivered; `None` (absent or `null`)
    /// for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<When>,
}

impl NewSubscription {
    /// Keys a body must have; a `VALIDATION_ERROR` for a missing one names it.
    pub const REQUIRED: &'static [&'static str] = &["url", "events"];
}

/// `PATCH /api/subscriptions/{id}`: changes; `None` leaves a field as it is. Unknown keys are
/// refused, and so is a patch that changes nothing, and `null` for any key but `filter`. `filter` has three states: absent (`None`,
/// left as it is), `null` (`Some(None)`, cleared) and a condition object (`Some(Some(_))`, set).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionPatch {
    /// A new URL.
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<String>,
    /// New type globs.
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub events: Option<Vec<String>>,
    /// A new secret.
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret: Option<String>,
    /// Ordered or not.
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub ordered: Option<bool>,
    /// Enabled or not (`true` re-enables a subscription a `410 Gone` disabled).
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub enabled: Option<bool>,
    /// A new filter, or `Some(None)` (written `"filter": null`) to remove it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub filter: Option<Option<When>>,
}

/// A key that, when present, holds a value: `null` is refused ("invalid type: null"), since for a
/// setting a subscription must have it could only mean "remove", which it cannot; leave the key
/// out to keep the setting.
fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A key that is present, `null` included, as `Some`; with `#[serde(default)]` an absent one stays
/// `None`, so a patch tells "leave it" from "clear it".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

impl SubscriptionPatch {
    /// Keys a body must have: none.
    pub const REQUIRED: &'static [&'static str] = &[];

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == SubscriptionPatch::default()
    }
}

/// A subscription: `{id, url, events, ordered, enabled, filter, createdAt}` (`filter` is `null`
/// when it has none), plus `secret` in the answer to its creation only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// Its id.
    pub id: String,
    /// Where events go.
    pub url: String,
    /// The type globs it takes.
    pub events: Vec<String>,
    /// Strict sequence order.
    pub ordered: bool,
    /// `false` after a 410 until re-enabled.
    pub enabled: bool,
    /// Its conditions on the payload; `null` when it has none.
    #[serde(default)]
    pub filter: Option<When>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Its signing secret: only in the answer to its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Its deliveries over the last 24 h (API.md section 12).
    #[serde(default)]
    pub stats: SubscriptionStats,
}

/// A subscription's counts over the last 24 h: `{delivered, failed, pending, dead}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionStats {
    /// Deliveries that succeeded within the window.
    pub delivered: u64,
    /// Failed attempts that started within the window (a delivery retried twice counts two).
    pub failed: u64,
    /// Deliveries queued now, whatever their age (waiting, parked, held or in flight).
    pub pending: u64,
    /// Deliveries that became dead letters within the window.
    pub dead: u64,
}

/// A secret as `Debug` shows it: `Some("***")` or `None`, never the secret.
fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "***")
}

impl fmt::Debug for NewSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSubscription")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &redacted(&self.secret))
            .field("ordered", &self.ordered)
            .field("filter", &self.filter)
            .finish()
    }
}

impl fmt::Debug for SubscriptionPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionPatch")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &redacted(&self.secret))
            .field("ordered", &self.ordered)
            .field("enabled", &self.enabled)
            .field("filter", &self.filter)
            .finish()
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("ordered", &self.ordered)
            .field("enabled", &self.enabled)
            .field("filter", &self.filter)
            .field("created_at", &self.created_at)
            .field("secret", &redacted(&self.secret))
            .field("stats", &self.stats)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn creation_round_trips_and_refuses_unknown_keys() {
        let body = json!({"url": "https://crm.example/hooks", "events": ["MINT_*"],
            "secret": "whsec_bm90aWZpZXItc2VjcmV0", "ordered": true});
        let parsed: NewSubscription = serde_json::from_value(body.clone()).expect("new");
        assert_eq!(serde_json::to_value(&parsed).expect("ser"), body);
        let minimal: NewSubscription =
            serde_json::from_value(json!({"url": "https://x/", "events": ["*"]})).expect("min");
        assert!(!minimal.ordered && minimal.secret.is_none());
        assert!(
            serde_json::from_value::<NewSubscription>(
                json!({"url": "https://x/", "events": ["*"], "colour": "red"})
            )
            .is_err()
        );
        for key in NewSubscription::REQUIRED {
            let mut v = json!({"url": "https://x/", "events": ["*"]});
            v.as_object_mut().map(|m| m.remove(*key));
            assert!(
                serde_json::from_value::<NewSubscription>(v).is_err(),
                "{key}"
            );
        }
    }

    #[test]
    fn patches_round_trip() {
        let body = json!({"enabled": true});
        let parsed: SubscriptionPatch = serde_json::from_value(body.clone()).expect("patch");
        assert_eq!(parsed.enabled, Some(true));
        assert!(!parsed.is_empty());
        assert_eq!(serde_json::to_value(&parsed).expect("ser"), body);
        let empty: SubscriptionPatch = serde_json::from_value(json!({})).expect("empty");
        assert!(empty.is_empty());
        assert!(serde_json::from_value::<SubscriptionPatch>(json!({"id": "other"})).is_err());
    }

    #[test]
    fn a_patch_refuses_null_but_for_the_filter() {
        for key in ["url", "events", "secret", "ordered", "enabled"] {
            let err = serde_json::from_value::<SubscriptionPatch>(json!({ key: null }))
                .expect_err("null refused");
            assert!(err.to_string().contains("null"), "{key}: {err}");
        }
    }

    #[test]
    fn a_patch_tells_an_absent_filter_from_a_null_one() {
        let absent: SubscriptionPatch =
            serde_json::from_value(json!({"enabled": true})).expect("p");
        assert_eq!(absent.filter, None);
        let cleared: SubscriptionPatch =
            serde_json::from_value(json!({"filter": null})).expect("p");
        assert_eq!(cleared.filter, Some(None));
        assert!(!cleared.is_empty(), "clearing the filter is a change");
        assert_eq!(
            serde_json::to_value(&cleared).expect("ser"),
            json!({"filter": null})
        );
        let set: SubscriptionPatch =
            serde_json::from_value(json!({"filter": {"/amount": {"gte": 10000}}})).expect("p");
        let when = set.filter.clone().flatten().expect("a filter");
        assert!(when.holds(&json!({"amount": 10000})));
        assert_eq!(
            serde_json::to_value(&set).expect("ser"),
            json!({"filter": {"/amount": {"gte": 10000}}})
        );
        for bad in [
            json!({"filter": []}),
            json!({"filter": {"amount": {"eq": 1}}}),
            json!({"filter": {"/a": {"near": 1}}}),
            json!({"filter": {"/a": {"gt": {}}}}),
        ] {
            assert!(
                serde_json::from_value::<SubscriptionPatch>(bad.clone()).is_err(),
                "{bad}"
            );
            let mut new = bad.clone();
            new["url"] = json!("https://x/");
            new["events"] = json!(["*"]);
            assert!(
                serde_json::from_value::<NewSubscription>(new).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_subscription_shows_its_filter_or_null() {
        let with = json!({"id": "sub-1", "url": "https://crm.example/hooks",
            "events": ["PAYMENT_*"], "ordered": false, "enabled": true,
            "filter": {"/amount": {"gte": 10000}, "/currency": {"eq": "EUR"}},
            "createdAt": "2026-02-09T20:30:00.123Z",
            "stats": {"delivered": 0, "failed": 0, "pending": 0, "dead": 0}});
        let sub: Subscription = serde_json::from_value(with.clone()).expect("sub");
        assert!(sub.filter.is_some());
        assert_eq!(serde_json::to_value(&sub).expect("ser"), with);
        let created: NewSubscription =
            serde_json::from_value(json!({"url": "https://x/", "events": ["*"], "filter": null}))
                .expect("null filter on creation");
        assert_eq!(created.filter, None);
    }

    #[test]
    fn the_secret_is_shown_only_when_given() {
        let created = json!({"id": "sub-1", "url": "https://crm.example/hooks",
            "events": ["MINT_*"], "ordered": false, "enabled": true, "filter": null,
            "createdAt": "2026-02-09T20:30:00.123Z", "secret": "whsec_bm90aWZpZXItc2VjcmV0",
            "stats": {"delivered": 3, "failed": 1, "pending": 0, "dead": 0}});
        let mut sub: Subscription = serde_json::from_value(created.clone()).expect("sub");
        assert_eq!(serde_json::to_value(&sub).expect("ser"), created);
        sub.secret = None;
        let shown = serde_json::to_value(&sub).expect("ser");
        assert!(shown.get("secret").is_none());
        assert_eq!(shown["createdAt"], "2026-02-09T20:30:00.123Z");
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let new = NewSubscription {
            url: "https://crm.example/hooks".into(),
            events: vec!["MINT_*".into()],
            secret: Some("hunter2-secret".into()),
            ordered: false,
            filter: None,
        };
        let patch = SubscriptionPatch {
            secret: Some("hunter2-secret".into()),
            ..SubscriptionPatch::default()
        };
        for shown in [format!("{new:?}"), format!("{patch:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }
}
