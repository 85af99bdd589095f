//! The control API's tasks routes.

use std::sync::Arc;

use axum::Router;

use crate::agent::Node;

/// The tasks routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
}
