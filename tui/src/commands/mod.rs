//! One module per entity for the CLI's subcommands beyond `node` and `cluster`: each has its clap
//! grammar and how it runs against the API client.
pub mod backups;
pub mod connections;
pub mod images;
pub mod pools;
pub mod servers;
pub mod stacks;
pub mod tasks;
pub mod users;
// [modules]
