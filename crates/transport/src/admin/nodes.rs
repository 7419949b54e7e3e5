//! `GET /api/nodes`: the configured nodes and their permissions, never their secrets.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use nexus_api::envelope::ListQuery;
use nexus_api::nodes::{Node, NodeWebhook};
use nexus_event::Pattern;

use super::{limit, page_of};
use crate::app::AppState;
use crate::envelope::{ApiError, page};
use crate::extract::Query;

pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let (nodes, next) = page_of(
        state.config.nodes.list(),
        |n| n.name.as_str(),
        q.cursor.as_deref(),
        limit(q.limit)?,
    );
    let list: Vec<Node> = nodes
        .into_iter()
        .map(|n| Node {
            publish: if n.publish.is_all() {
                vec!["*".to_owned()]
            } else {
                n.publish
                    .patterns()
                    .iter()
                    .map(Pattern::as_str)
                    .map(str::to_owned)
                    .collect()
            },
            webhook: state.config.webhook_mapping(&n.name).map(|m| NodeWebhook {
                event_type: m.event_type.to_string(),
                id_pointer: m.id_pointer,
            }),
            name: n.name.clone(),
        })
        .collect();
    Ok(page(list, next).into_response())
}
