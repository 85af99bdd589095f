//! API types and client calls for users (`/api/v1/users`).
