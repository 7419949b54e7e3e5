//! The catalogue: declared types read from the store, each schema compiled once, kept in memory
//! for the checks every publish makes, and read again whenever the store's watch says event
//! types changed (here or on another instance of the same database).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use nexus_api::event_types::{EventType as WireType, EventTypePut};
use nexus_event::EventType;
use nexus_store::{
    EventTypePut as StorePut, EventTypeRecord, EventTypes, MAX_PAGE, Page, StoreError, TypeOrigin,
};
use serde_json::Value;
use tokio::sync::watch;

use crate::error::CatalogError;
use crate::metric_names;
use crate::schema::{Schema, Violations};

/// How long the watcher waits before reading the store again after a failed read.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A declared type as the catalogue keeps it: the stored record and its compiled schema.
#[derive(Debug)]
struct Entry {
    record: EventTypeRecord,
    /// `None`: no schema, or a stored one that does not compile (logged; the type's payloads
    /// are then not checked).
    schema: Option<Arc<Schema>>,
}

/// The catalogue as read at one moment.
#[derive(Debug, Default)]
struct Snapshot {
    types: HashMap<String, Arc<Entry>>,
}

/// An event passed the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Its type is deprecated: answer with `Deprecation: true`.
    pub deprecated: bool,
}

/// Why the catalogue refuses an event (API.md section 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The type is not declared and the catalogue requires declared types
    /// (`NEXUS_REQUIRE_DECLARED_TYPES`).
    Undeclared {
        /// The type.
        event_type: String,
    },
    /// The payload fails the type's schema.
    Schema {
        /// The type.
        event_type: String,
        /// Where and why.
        violations: Violations,
    },
}

impl Refusal {
    /// The `reason` label of `nexus_events_rejected_total`: `undeclared` or `schema`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Undeclared { .. } => "undeclared",
            Refusal::Schema { .. } => "schema",
        }
    }

    /// The refused event's type.
    pub fn event_type(&self) -> &str {
        match self {
            Refusal::Undeclared { event_type } | Refusal::Schema { event_type, .. } => event_type,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Undeclared { event_type } => write!(
                f,
                "type {event_type} is not declared, and this server accepts declared types only"
            ),
            Refusal::Schema {
                event_type,
                violations,
            } => write!(
                f,
                "the payload does not match the schema of {event_type}: {violations}"
            ),
        }
    }
}

/// What [`Catalog::sync_config`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Types the config file declares (created or replaced; an unchanged one keeps its times).
    pub declared: usize,
    /// Types the config file declared before but no longer does: handed over to the API, their
    /// content kept.
    pub released: Vec<String>,
}

/// Checks a declaration as API.md section 11 requires: its schema compiles (`schema`) and each
/// example matches it (`examples/<index>`). Answers the compiled schema.
///
/// ```
/// use nexus_api::event_types::EventTypePut;
/// use serde_json::json;
///
/// let ok = EventTypePut { schema: Some(json!({"type": "object"})),
///     examples: vec![json!({})], ..Default::default() };
/// assert!(nexus_catalog::check_declaration(&ok).is_ok());
/// let bad = EventTypePut { examples: vec![json!({}), json!(7)], ..ok };
/// let e = nexus_catalog::check_declaration(&bad).expect_err("7 is not an object");
/// assert!(matches!(e, nexus_catalog::CatalogError::Invalid { field, .. } if field == "examples/1"));
/// ```
pub fn check_declaration(put: &EventTypePut) -> Result<Option<Schema>, CatalogError> {
    let Some(schema) = &put.schema else {
        return Ok(None);
    };
    let compiled = Schema::compile(schema).map_err(|e| {
        CatalogError::invalid("schema", format!("the schema does not compile: {e}"))
    })?;
    for (i, example) in put.examples.iter().enumerate() {
        compiled.check(example).map_err(|v| {
            CatalogError::invalid(
                format!("examples/{i}"),
                format!("example {i} does not match the schema: {v}"),
            )
        })?;
    }
    Ok(Some(compiled))
}

/// The wire form of a stored type (`GET /api/event-types`).
pub fn wire(record: &EventTypeRecord) -> WireType {
    WireType {
        name: record.name.to_string(),
        description: record.description.clone(),
        schema: record.schema.clone(),
        examples: record.examples.clone(),
        deprecated: record.deprecated,
        created_at: record.created_at,
        updated_at: record.updated_at,
    }
}

/// The event-type catalogue over a store.
///
/// Every publish asks [`Catalog::check`], which reads only memory: the declared types with
/// their schemas compiled once. The catalogue reads the store again after each of its own
/// changes (before answering it) and whenever the store's
/// [`EventTypes::event_type_changes`] moves, which on PostgreSQL includes every other
/// instance's change; a schema whose text did not change keeps its compiled form.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// # let dir = tempfile::tempdir()?;
/// use std::sync::Arc;
/// use nexus_api::event_types::EventTypePut;
/// use nexus_catalog::Catalog;
/// use nexus_event::EventType;
/// use nexus_store::TypeOrigin;
/// use serde_json::json;
///
/// let store = Arc::new(nexus_store::SqliteStore::open(dir.path())?);
/// let catalog = Catalog::open(store, false).await?;
/// let paid = EventType::new("PAYMENT_RECEIVED")?;
/// let put = EventTypePut { schema: Some(json!({"required": ["amount"]})), ..Default::default() };
/// catalog.put(paid.clone(), put, TypeOrigin::Api).await?;
/// assert!(catalog.check(&paid, &json!({"amount": 1})).is_ok());
/// assert!(catalog.check(&paid, &json!({})).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })
/// # }
/// ```
pub struct Catalog {
    store: Arc<dyn EventTypes>,
    require_declared: bool,
    snapshot: RwLock<Arc<Snapshot>>,
    /// One read of the store at a time, so a read that began before a change can never replace
    /// the snapshot of a read that began after it.
    reading: tokio::sync::Mutex<()>,
    /// The task that follows the store's changes; see [`Catalog::stop`].
    following: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("require_declared", &self.require_declared)
            .field("types", &self.current().types.len())
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// Reads the catalogue from `store`, then follows its changes. With `require_declared`,
    /// an undeclared type is refused (`NEXUS_REQUIRE_DECLARED_TYPES`).
    pub async fn open(
        store: Arc<dyn EventTypes>,
        require_declared: bool,
    ) -> Result<Arc<Catalog>, StoreError> {
        let changes = store.event_type_changes();
        let catalog = Arc::new(Catalog::empty(store, require_declared));
        catalog.reload().await?;
        catalog.follow(changes);
        Ok(catalog)
    }

    /// A catalogue that reads `store` in the background, at once and after every change, for a
    /// caller that cannot wait (until the first read lands, nothing is declared). Must be called
    /// inside a tokio runtime; outside one it only reads after its own changes.
    pub fn start(store: Arc<dyn EventTypes>, require_declared: bool) -> Arc<Catalog> {
        let mut changes = store.event_type_changes();
        changes.mark_changed();
        let catalog = Arc::new(Catalog::empty(store, require_declared));
        if tokio::runtime::Handle::try_current().is_ok() {
            catalog.follow(changes);
        } else {
            tracing::warn!(
                "the event-type catalogue started outside a runtime; it reads the store only after its own changes"
            );
        }
        catalog
    }

    fn empty(store: Arc<dyn EventTypes>, require_declared: bool) -> Catalog {
        Catalog {
            store,
            require_declared,
            snapshot: RwLock::new(Arc::default()),
            reading: tokio::sync::Mutex::new(()),
            following: std::sync::Mutex::new(None),
        }
    }

    fn follow(self: &Arc<Self>, changes: watch::Receiver<u64>) {
        let task = watch_changes(Arc::downgrade(self), changes);
        if let Some(old) = self
            .following
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(task)
        {
            old.abort();
        }
    }

    /// Stops following the store's changes and waits until the following task is gone, so it
    /// holds no handle of the store any more (a read it was making is dropped): call it before
    /// closing the store, whose close needs the last handle. The catalogue still answers from
    /// what it read, and its own changes still read the store again.
    pub async fn stop(&self) {
        let task = self
            .following
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// [`Catalog::stop`] without waiting: for a catalogue being replaced.
    pub fn stop_now(&self) {
        if let Some(task) = self
            .following
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }

    /// Whether undeclared types are refused.
    pub fn requires_declared(&self) -> bool {
        self.require_declared
    }

    fn current(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Checks an event about to be stored: its type must be declared when the catalogue
    /// requires it, and its payload must match the type's schema. Counts each refusal in
    /// `nexus_events_rejected_total{event_type,reason}`. Reads memory only.
    pub fn check(&self, event_type: &EventType, payload: &Value) -> Result<Accepted, Refusal> {
        let snapshot = self.current();
        let refusal = match snapshot.types.get(event_type.as_str()) {
            None if self.require_declared => Refusal::Undeclared {
                event_type: event_type.to_string(),
            },
            None => return Ok(Accepted { deprecated: false }),
            Some(entry) => {
                let checked = match &entry.schema {
                    Some(schema) => schema.check(payload),
                    None => Ok(()),
                };
                match checked {
                    Ok(()) => {
                        return Ok(Accepted {
                            deprecated: entry.record.deprecated,
                        });
                    }
                    Err(violations) => Refusal::Schema {
                        event_type: event_type.to_string(),
                        violations,
                    },
                }
            }
        };
        metrics::counter!(
            metric_names::EVENTS_REJECTED_TOTAL,
            "event_type" => event_type.to_string(),
            "reason" => refusal.reason()
        )
        .increment(1);
        Err(refusal)
    }

    /// Every declared type as this instance knows it now, by name: what the AsyncAPI document
    /// describes.
    pub fn declared(&self) -> Vec<WireType> {
        let snapshot = self.current();
        let mut types: Vec<WireType> = snapshot.types.values().map(|e| wire(&e.record)).collect();
        types.sort_by(|a, b| a.name.cmp(&b.name));
        types
    }

    /// One page of the stored types, by name (`GET /api/event-types`).
    pub async fn list(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<WireType>, CatalogError> {
        let page = self.store.event_types(limit, cursor).await?;
        Ok(Page {
            items: page.items.iter().map(wire).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// One stored type (`GET /api/event-types/{name}`).
    pub async fn get(&self, name: &str) -> Result<Option<WireType>, CatalogError> {
        Ok(self.store.event_type(name).await?.as_ref().map(wire))
    }

    /// Declares or replaces a type after [`check_declaration`]; answers it as stored and
    /// whether it was new. The catalogue has read it back before this returns, so the next
    /// check on this instance applies it.
    pub async fn put(
        &self,
        name: EventType,
        put: EventTypePut,
        origin: TypeOrigin,
    ) -> Result<(WireType, bool), CatalogError> {
        check_declaration(&put)?;
        let outcome = self
            .store
            .put_event_type(StorePut {
                name,
                description: put.description,
                schema: put.schema,
                examples: put.examples,
                deprecated: put.deprecated,
                origin,
            })
            .await?;
        self.reload().await?;
        Ok((wire(&outcome.record), outcome.created))
    }

    /// Deletes a type declared through the API; `false` if there was none. Events of the type
    /// already stored are kept.
    pub async fn delete(&self, name: &str) -> Result<bool, CatalogError> {
        let deleted = self.store.delete_event_type(name).await?;
        if deleted {
            self.reload().await?;
        }
        Ok(deleted)
    }

    /// Makes the store's config-declared types those of the config file: each declaration is
    /// put (as the config's), and a type the file declared before but no longer does is handed
    /// to the API with its content kept (never deleted: its schema may still guard publishes,
    /// and an operator may delete it through the API).
    pub async fn sync_config(
        &self,
        declarations: Vec<(EventType, EventTypePut)>,
    ) -> Result<SyncReport, CatalogError> {
        let mut report = SyncReport::default();
        let names: Vec<String> = declarations.iter().map(|(n, _)| n.to_string()).collect();
        for (name, put) in declarations {
            let field = name.to_string();
            check_declaration(&put).map_err(|e| match e {
                CatalogError::Invalid { field: f, message } => {
                    CatalogError::invalid(format!("{field}: {f}"), message)
                }
                other => other,
            })?;
            self.store
                .put_event_type(StorePut {
                    name,
                    description: put.description,
                    schema: put.schema,
                    examples: put.examples,
                    deprecated: put.deprecated,
                    origin: TypeOrigin::Config,
                })
                .await?;
            report.declared += 1;
        }
        for stored in self.read_all().await? {
            let name = stored.name.to_string();
            if stored.origin == TypeOrigin::Config
                && !names.contains(&name)
                && self.store.release_event_type(&name).await?
            {
                tracing::info!(event_type = %name, "event type left the config file; the admin API manages it from now on");
                report.released.push(name);
            }
        }
        self.reload().await?;
        Ok(report)
    }

    async fn read_all(&self) -> Result<Vec<EventTypeRecord>, StoreError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.event_types(MAX_PAGE, cursor.as_deref()).await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// Reads the catalogue from the store again; schemas whose text did not change keep their
    /// compiled form.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _reading = self.reading.lock().await;
        let records = self.read_all().await?;
        let before = self.current();
        let mut types = HashMap::with_capacity(records.len());
        for record in records {
            let name = record.name.to_string();
            let schema = match (&record.schema, before.types.get(&name)) {
                (None, _) => None,
                (Some(text), Some(old)) if old.record.schema.as_ref() == Some(text) => {
                    old.schema.clone()
                }
                (Some(text), _) => match Schema::compile(text) {
                    Ok(schema) => Some(Arc::new(schema)),
                    Err(e) => {
                        // Refused at every put; only a database changed by hand (or a schema
                        // a later compiler reads differently) gets here.
                        tracing::error!(event_type = %name, error = %e, "a stored schema does not compile; payloads of this type are not checked");
                        None
                    }
                },
            };
            types.insert(name, Arc::new(Entry { record, schema }));
        }
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(Snapshot { types });
        Ok(())
    }
}

/// Reads the catalogue again whenever the store's watch moves, until the catalogue or the
/// store is gone. A failed read is tried again after [`RETRY_AFTER`].
fn watch_changes(
    catalog: Weak<Catalog>,
    mut changes: watch::Receiver<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            loop {
                let Some(catalog) = catalog.upgrade() else {
                    return;
                };
                match catalog.reload().await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the event-type catalogue; trying again");
                        drop(catalog);
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                }
            }
        }
    })
}
