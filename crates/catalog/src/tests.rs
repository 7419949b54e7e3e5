//! The catalogue over a real (SQLite) store: checks, swaps after changes, config sync.

use std::sync::Arc;

use nexus_api::event_types::EventTypePut;
use nexus_event::EventType;
use nexus_store::{EventTypes, SqliteStore, StoreError, TypeOrigin};
use serde_json::json;

use crate::{Catalog, CatalogError, Refusal};

async fn store() -> (Arc<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("store");
    (Arc::new(store), dir)
}

fn name(n: &str) -> EventType {
    EventType::new(n).expect("type")
}

fn amount_schema(kind: &str) -> EventTypePut {
    EventTypePut {
        description: "paid".into(),
        schema: Some(json!({"type": "object", "required": ["amount"],
            "properties": {"amount": {"type": kind}}})),
        examples: vec![],
        deprecated: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_swaps_the_validator_before_it_answers() {
    let (store, _dir) = store().await;
    let catalog = Catalog::open(store, false).await.expect("open");
    let paid = name("PAYMENT_RECEIVED");
    assert!(
        catalog.check(&paid, &json!("anything")).is_ok(),
        "undeclared and not required: accepted"
    );
    let (made, created) = catalog
        .put(paid.clone(), amount_schema("integer"), TypeOrigin::Api)
        .await
        .expect("put");
    assert!(created && made.name == "PAYMENT_RECEIVED");
    assert!(catalog.check(&paid, &json!({"amount": 1})).is_ok());
    let refused = catalog
        .check(&paid, &json!({"amount": "1"}))
        .expect_err("a string");
    let Refusal::Schema { violations, .. } = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(violations.pointer(), "/amount");
    assert_eq!(refused.reason(), "schema");

    let (_, created) = catalog
        .put(paid.clone(), amount_schema("string"), TypeOrigin::Api)
        .await
        .expect("replace");
    assert!(!created);
    assert!(
        catalog.check(&paid, &json!({"amount": "1"})).is_ok(),
        "swapped"
    );
    assert!(catalog.check(&paid, &json!({"amount": 1})).is_err());

    let deprecated = EventTypePut {
        deprecated: true,
        schema: None,
        ..amount_schema("string")
    };
    catalog
        .put(paid.clone(), deprecated, TypeOrigin::Api)
        .await
        .expect("deprecate");
    assert_eq!(
        catalog.check(&paid, &json!(null)).map(|a| a.deprecated),
        Ok(true)
    );
    assert!(catalog.delete("PAYMENT_RECEIVED").await.expect("delete"));
    assert_eq!(
        catalog.check(&paid, &json!(null)).map(|a| a.deprecated),
        Ok(false)
    );
    assert!(catalog.declared().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_declarations_are_refused_naming_the_field() {
    let (store, _dir) = store().await;
    let catalog = Catalog::open(store.clone(), false).await.expect("open");
    let field = |e: CatalogError| match e {
        CatalogError::Invalid { field, .. } => field,
        other => panic!("{other:?}"),
    };
    let bad_schema = EventTypePut {
        schema: Some(json!({"type": "integr"})),
        ..EventTypePut::default()
    };
    let e = catalog
        .put(name("X"), bad_schema, TypeOrigin::Api)
        .await
        .expect_err("does not compile");
    assert_eq!(field(e), "schema");
    let bad_example = EventTypePut {
        examples: vec![json!({"amount": 1}), json!({"amount": 1}), json!({})],
        ..amount_schema("integer")
    };
    let e = catalog
        .put(name("X"), bad_example, TypeOrigin::Api)
        .await
        .expect_err("example 2 lacks amount");
    assert_eq!(field(e), "examples/2");
    assert_eq!(
        store.event_type("X").await.expect("read"),
        None,
        "nothing stored"
    );
}

/// Another writer of the same store (another instance, for SQLite a second handle is not
/// possible, so the store's own watch stands in): the catalogue follows the watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_behind_its_back_are_followed() {
    let (store, _dir) = store().await;
    let catalog = Catalog::open(store.clone(), true).await.expect("open");
    let minted = name("MINT_CONFIRMED");
    let refused = catalog.check(&minted, &json!({})).expect_err("undeclared");
    assert_eq!(refused.reason(), "undeclared");
    store
        .put_event_type(nexus_store::EventTypePut {
            name: minted.clone(),
            description: String::new(),
            schema: Some(json!({"required": ["mint_id"]})),
            examples: vec![],
            deprecated: false,
            origin: TypeOrigin::Api,
        })
        .await
        .expect("put behind its back");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match catalog.check(&minted, &json!({})) {
            Err(Refusal::Schema { .. }) => break,
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "not followed: {other:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    assert!(catalog.check(&minted, &json!({"mint_id": "m"})).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_sync_declares_and_releases() {
    let (store, _dir) = store().await;
    let catalog = Catalog::open(store.clone(), false).await.expect("open");
    let report = catalog
        .sync_config(vec![
            (name("A"), amount_schema("integer")),
            (name("B"), EventTypePut::default()),
        ])
        .await
        .expect("sync");
    assert_eq!((report.declared, report.released.len()), (2, 0));
    let e = catalog
        .put(name("A"), EventTypePut::default(), TypeOrigin::Api)
        .await
        .expect_err("declared in the config");
    assert!(
        matches!(e, CatalogError::Store(StoreError::Declared { .. })),
        "{e:?}"
    );
    assert!(catalog.delete("B").await.is_err());

    let before = store.event_type("A").await.expect("read").expect("A");
    let report = catalog
        .sync_config(vec![(name("A"), amount_schema("integer"))])
        .await
        .expect("sync again");
    assert_eq!(report.released, vec!["B".to_owned()]);
    let after = store.event_type("A").await.expect("read").expect("A");
    assert_eq!(after, before, "an unchanged declaration keeps its times");
    assert!(catalog.delete("B").await.expect("the API's now"));
    let names: Vec<String> = catalog.declared().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["A"]);

    let e = catalog
        .sync_config(vec![(
            name("C"),
            EventTypePut {
                schema: Some(json!({"type": 1})),
                ..EventTypePut::default()
            },
        )])
        .await
        .expect_err("bad schema");
    assert!(
        matches!(&e, CatalogError::Invalid { field, .. } if field == "C: schema"),
        "{e:?}"
    );
}
