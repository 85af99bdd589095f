//! API types and client calls for servers (`/api/v1/servers`).
