//! `skiff pool ...` (admins): storage pools — `local` on every node, node-local pools an admin
//! adds on one node, and shared pools numbered from 0 (a directory at the same path on every
//! node) — with their use per node. Pool writes take effect at once; the nodes open a new pool
//! within a reconciler pass, which `skiff pool list` shows.

use std::io::Write;

use clap::Subcommand;
use skiff_cluster::api::client::ApiClient;
use skiff_cluster::api::pools::{AddPoolRequest, PoolView};

use crate::cli::OutputFormat;
use crate::output;
use crate::CliError;

#[derive(Debug, Subcommand, PartialEq)]
pub enum PoolCommand {
    /// List every pool and its use on each node.
    #[command(visible_alias = "ls")]
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Add a node-local pool (NAME --node NODE) or the next shared pool (--shared, numbered),
    /// in a directory (--path, made when missing) or a ZFS dataset (--dataset).
    Add {
        /// The name of a node-local pool (a-z, 0-9, '-'); none for a shared pool.
        name: Option<String>,
        /// The node of a node-local pool.
        #[arg(long, conflicts_with = "shared")]
        node: Option<String>,
        /// A shared pool: the same directory on every node (an NFS mount, ...).
        #[arg(long)]
        shared: bool,
        /// Its directory (absolute).
        #[arg(long, conflicts_with = "dataset", required_unless_present = "dataset")]
        path: Option<String>,
        /// Its ZFS dataset (POOL/NAME; nodes built with the `zfs` feature).
        #[arg(long)]
        dataset: Option<String>,
        /// With --dataset: where its whole-pool backups are sent (a dataset in another pool).
        #[arg(long, requires = "dataset")]
        backup_dataset: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Remove a pool nothing is in (the nodes forget it; its files stay).
    #[command(visible_alias = "rm")]
    Remove { name: String },
}

/// Columns of `skiff pool list`: one row per pool and node.
pub const POOL_COLUMNS: [&str; 8] = [
    "POOL", "KIND", "SCOPE", "NODE", "PATH", "USED", "IMAGES", "STATE",
];

/// `skiff pool list` as a table.
pub fn pools_table(pools: &[PoolView]) -> String {
    let mut rows = Vec::new();
    for p in pools {
        let scope = if p.shared {
            "shared".to_string()
        } else if p.node.is_some() {
            "node".to_string()
        } else {
            "every node".to_string()
        };
        let used = format!("{} images, {} servers", p.images, p.servers);
        if p.nodes.is_empty() {
            rows.push(vec![
                p.name.clone(),
                p.kind.clone(),
                scope.clone(),
                p.node.clone().unwrap_or_else(|| "-".into()),
                p.place.clone(),
                "-".into(),
                used.clone(),
                "not reported".into(),
            ]);
        }
        for n in &p.nodes {
            let state = match (&n.error, n.reported) {
                (Some(e), _) => format!("unusable: {e}"),
                (None, true) => "ok".into(),
                (None, false) => "not reported".into(),
            };
            rows.push(vec![
                p.name.clone(),
                p.kind.clone(),
                scope.clone(),
                n.node.clone(),
                if n.path.is_empty() {
                    p.place.clone()
                } else {
                    n.path.clone()
                },
                output::memory_pair(n.used_bytes, n.total_bytes),
                used.clone(),
                state,
            ]);
        }
    }
    output::table(&POOL_COLUMNS, &rows)
}

/// Runs one `skiff pool` command.
pub async fn run(
    cmd: PoolCommand,
    client: &ApiClient,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let text = match cmd {
        PoolCommand::List { output } => {
            let pools = client.pools().await?;
            match output {
                OutputFormat::Table => pools_table(&pools),
                OutputFormat::Json => output::json(&pools),
            }
        }
        PoolCommand::Add {
            name,
            node,
            shared,
            path,
            dataset,
            backup_dataset,
            output,
        } => {
            let req = AddPoolRequest {
                name,
                node,
                shared,
                path,
                dataset,
                backup_dataset,
            };
            let pool = client.add_pool(&req).await?;
            match output {
                OutputFormat::Table => format!(
                    "added pool {} ({} at {}){}\n",
                    pool.name,
                    pool.kind,
                    pool.place,
                    match &pool.node {
                        Some(n) => format!(" on node {n}"),
                        None => " on every node".into(),
                    }
                ),
                OutputFormat::Json => output::json(&pool),
            }
        }
        PoolCommand::Remove { name } => {
            let pool = client.remove_pool(&name).await?;
            format!("removed pool {} (its files stay)\n", pool.name)
        }
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<PoolCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied()))?;
        match cli.command {
            Some(Command::Pool(c)) => Ok(c),
            other => panic!("not a pool command: {other:?}"),
        }
    }

    #[test]
    fn grammar() {
        assert_eq!(
            parse(&["pool", "add", "fast", "--node", "n1", "--path", "/srv/fast"]).ok(),
            Some(PoolCommand::Add {
                name: Some("fast".into()),
                node: Some("n1".into()),
                shared: false,
                path: Some("/srv/fast".into()),
                dataset: None,
                backup_dataset: None,
                output: OutputFormat::Table,
            })
        );
        assert!(parse(&["pool", "add", "--shared", "--path", "/mnt/nfs"]).is_ok());
        assert!(
            parse(&["pool", "add", "x", "--node", "n1"]).is_err(),
            "no place"
        );
        assert!(parse(&[
            "pool",
            "add",
            "--shared",
            "--path",
            "/a",
            "--dataset",
            "t/a"
        ])
        .is_err());
        assert!(parse(&["pool", "add", "--shared", "--node", "n1", "--path", "/a"]).is_err());
        assert_eq!(
            parse(&["pool", "rm", "fast"]).ok(),
            Some(PoolCommand::Remove {
                name: "fast".into()
            })
        );
    }
}
