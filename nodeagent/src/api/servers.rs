//! The control API's servers routes.

use std::sync::Arc;

use axum::Router;

use crate::agent::Node;

/// The servers routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
}
