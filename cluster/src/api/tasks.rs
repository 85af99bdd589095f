//! API types and client calls for tasks (`/api/v1/tasks`).
