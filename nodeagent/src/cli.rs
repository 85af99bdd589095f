//! The `skiffd` command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use skiff_cluster::config::NodeConfig;

use crate::agent::{Node, CONFIG_FILE};

#[derive(Debug, Parser)]
#[command(name = "skiffd", version, about = "The Skiff node agent")]
pub struct Cli {
    /// Log filter (tracing syntax, e.g. `info` or `skiff_cluster=debug`); `RUST_LOG` also works.
    #[arg(
        long,
        global = true,
        env = "SKIFF_LOG",
        default_value = "info,openraft=warn"
    )]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new cluster: its CA, this node's identity, and the first admin credential.
    Init {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Join an existing cluster with a token from `skiff node token`.
    Join {
        #[command(flatten)]
        node: NodeArgs,
        /// Any node of the cluster.
        #[arg(long)]
        seed: SocketAddr,
        #[arg(long, env = "SKIFF_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// May hold a Raft replica and become the admin node (joins as a learner; `skiff node
        /// promote` makes it a voter).
        #[arg(long)]
        admin_eligible: bool,
    },
    /// Run the node in a data dir.
    Run {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Check a node configuration file and say what is wrong with it.
    CheckConfig { file: PathBuf },
}

/// What `init` and `join` need to know about the new node.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long)]
    name: String,
    /// QUIC (UDP) address; the HTTPS API uses the same port over TCP.
    #[arg(long)]
    listen: SocketAddr,
    /// Address other nodes reach this one at, when it differs from --listen.
    #[arg(long)]
    advertise: Option<SocketAddr>,
}

fn new_config(args: &NodeArgs, admin_eligible: bool) -> NodeConfig {
    NodeConfig {
        name: args.name.clone(),
        listen: args.listen,
        advertise: args.advertise,
        admin_eligible,
        seeds: Vec::new(),
        gossip: Default::default(),
        raft: Default::default(),
        compute: Default::default(),
        scheduler: Default::default(),
        ha: Default::default(),
        ssh: Default::default(),
    }
}

/// Runs a parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init { node } => {
            let data_dir = &node.data_dir;
            let out = crate::init::init_cluster(data_dir, new_config(&node, true))?;
            println!(
                "cluster {} created in {}",
                out.cluster_id,
                data_dir.display()
            );
            println!("admin credential: {}", out.credential_path.display());
            println!(
                "start the node:   skiffd run --data-dir {}",
                data_dir.display()
            );
            Ok(())
        }
        Command::Join {
            node,
            seed,
            token,
            admin_eligible,
        } => {
            let data_dir = &node.data_dir;
            let cfg = new_config(&node, admin_eligible);
            let acc = crate::join::join_cluster(data_dir, cfg, seed, &token).await?;
            println!(
                "joined cluster {} as node {}; start it: skiffd run --data-dir {}",
                acc.cluster_id,
                acc.node_id,
                data_dir.display()
            );
            Ok(())
        }
        Command::Run { data_dir } => run_node(&data_dir).await,
        Command::CheckConfig { file } => {
            NodeConfig::load(&file)?;
            println!("{}: ok", file.display());
            Ok(())
        }
    }
}

async fn run_node(data_dir: &Path) -> anyhow::Result<()> {
    if !data_dir.join(CONFIG_FILE).exists() {
        anyhow::bail!(
            "{} holds no node: create one with `skiffd init` or `skiffd join`",
            data_dir.display()
        );
    }
    let node = Node::start(data_dir)
        .await
        .context("cannot start the node")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}
