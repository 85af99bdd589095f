//! The control API's users routes.

use std::sync::Arc;

use axum::Router;

use crate::agent::Node;

/// The users routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
}
