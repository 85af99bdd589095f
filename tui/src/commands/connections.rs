//! `skiff connection ...` (a server interface's way out: internal IP, external IP, IP mapping,
//! gateway) and `skiff network ...` (the internal network and the external address pool).
//! Connection writes take effect at once: no task to follow.

use std::io::Write;
use std::net::Ipv4Addr;

use clap::{Subcommand, ValueEnum};
use skiff_cluster::api::client::ApiClient;
use skiff_cluster::api::connections::{
    ConnectionView, CreateConnectionRequest, NetworkView, SetNetworkRequest,
};
use skiff_cluster::state::ConnectionKind;

use crate::cli::OutputFormat;
use crate::output;
use crate::CliError;

/// The kind of a connection, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// An address on the internal network only.
    InternalIp,
    /// An internal address plus a whole external one (every port, both ways).
    ExternalIp,
    /// An internal address plus listed ports (or all) of an external one forwarded to it.
    IpMapping,
    /// An internal address with NAT out through the leader.
    Gateway,
}

impl From<Kind> for ConnectionKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::InternalIp => ConnectionKind::InternalIp,
            Kind::ExternalIp => ConnectionKind::ExternalIp,
            Kind::IpMapping => ConnectionKind::IpMapping,
            Kind::Gateway => ConnectionKind::Gateway,
        }
    }
}

#[derive(Debug, Subcommand, PartialEq)]
pub enum ConnectionCommand {
    /// List your connections (every connection for admins).
    #[command(visible_alias = "ls")]
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Show one connection and the server using it.
    Show {
        name: String,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Create a connection; its addresses are the lowest free ones unless given.
    Create {
        name: String,
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long, value_name = "ADDRESS")]
        internal_ip: Option<Ipv4Addr>,
        #[arg(long, value_name = "ADDRESS")]
        external_ip: Option<Ipv4Addr>,
        /// IP mapping: the ports to forward, e.g. `22,80,443` (default: all).
        #[arg(long, value_delimiter = ',', value_name = "PORT,...")]
        ports: Vec<u16>,
        /// Admins: create it for this user.
        #[arg(long)]
        owner: Option<String>,
        /// Create it deactivated.
        #[arg(long)]
        inactive: bool,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Put a connection into effect.
    Activate { name: String },
    /// Take a connection out of effect (its addresses stay reserved).
    Deactivate { name: String },
    /// Remove a connection no server uses.
    #[command(visible_alias = "rm")]
    Remove { name: String },
}

#[derive(Debug, Subcommand, PartialEq)]
pub enum NetworkCommand {
    /// Show the internal network, the external pool and how much of each is used.
    Show {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Change the internal network and/or the external pool (admin).
    Set {
        /// The internal network, e.g. `10.47.0.0/16`.
        #[arg(long, value_name = "CIDR")]
        internal_cidr: Option<String>,
        /// External address ranges, e.g. `198.51.100.10-198.51.100.50,203.0.113.7`; replaces
        /// the pool.
        #[arg(long, value_delimiter = ',', value_name = "RANGE,...", num_args = 0..)]
        external_pool: Option<Vec<String>>,
    },
}

fn kind_text(k: ConnectionKind) -> &'static str {
    match k {
        ConnectionKind::InternalIp => "internal IP",
        ConnectionKind::ExternalIp => "external IP",
        ConnectionKind::IpMapping => "IP mapping",
        ConnectionKind::Gateway => "gateway",
    }
}

fn ports_text(c: &ConnectionView) -> String {
    match c.kind {
        ConnectionKind::IpMapping if c.ports.is_empty() => "all".into(),
        ConnectionKind::IpMapping => c
            .ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
        ConnectionKind::ExternalIp => "all".into(),
        _ => "-".into(),
    }
}

/// `skiff connection list` as a table.
pub fn connections_table(conns: &[ConnectionView]) -> String {
    let rows: Vec<Vec<String>> = conns
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                kind_text(c.kind).into(),
                c.internal_ip.to_string(),
                c.external_ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "-".into()),
                ports_text(c),
                if c.active { "active" } else { "inactive" }.into(),
                c.server.clone().unwrap_or_else(|| "-".into()),
                c.owner.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME", "KIND", "INTERNAL", "EXTERNAL", "PORTS", "STATE", "SERVER", "OWNER",
        ],
        &rows,
    )
}

fn network_text(n: &NetworkView) -> String {
    let pool = if n.external_pool.is_empty() {
        "none (set one with `skiff network set --external-pool FIRST-LAST`)".to_string()
    } else {
        n.external_pool.join(", ")
    };
    format!(
        "internal network  {} (gateway {}, {} in use)\nexternal pool     {}\nexternal in use   {} of {}\n",
        n.internal_cidr, n.internal_gateway, n.internal_used, pool, n.external_used, n.external_total
    )
}

fn one(c: &ConnectionView, format: OutputFormat) -> String {
    match format {
        OutputFormat::Table => connections_table(std::slice::from_ref(c)),
        OutputFormat::Json => output::json(c),
    }
}

/// Runs one `skiff connection` command.
pub async fn run(
    cmd: ConnectionCommand,
    client: &ApiClient,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    use ConnectionCommand as C;
    let text = match cmd {
        C::List { output } => {
            let conns = client.connections().await?;
            match output {
                OutputFormat::Table => connections_table(&conns),
                OutputFormat::Json => output::json(&conns),
            }
        }
        C::Show { name, output } => one(&client.connection(&name).await?, output),
        C::Create {
            name,
            kind,
            internal_ip,
            external_ip,
            ports,
            owner,
            inactive,
            output,
        } => {
            let mut req = CreateConnectionRequest::new(name, kind.into());
            req.internal_ip = internal_ip;
            req.external_ip = external_ip;
            req.ports = ports;
            req.owner = owner;
            req.active = inactive.then_some(false);
            one(&client.create_connection(&req).await?, output)
        }
        C::Activate { name } => one(
            &client.set_connection_active(&name, true).await?,
            OutputFormat::Table,
        ),
        C::Deactivate { name } => one(
            &client.set_connection_active(&name, false).await?,
            OutputFormat::Table,
        ),
        C::Remove { name } => {
            let c = client.remove_connection(&name).await?;
            format!("removed connection {}\n", c.name)
        }
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// Runs one `skiff network` command.
pub async fn run_network(
    cmd: NetworkCommand,
    client: &ApiClient,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (view, output) = match cmd {
        NetworkCommand::Show { output } => (client.network().await?, output),
        NetworkCommand::Set {
            internal_cidr,
            external_pool,
        } => {
            let req = SetNetworkRequest {
                internal_cidr,
                external_pool,
            };
            (client.set_network(&req).await?, OutputFormat::Table)
        }
    };
    let text = match output {
        OutputFormat::Table => network_text(&view),
        OutputFormat::Json => output::json(&view),
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied()))?;
        cli.command
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::MissingSubcommand))
    }

    #[test]
    fn grammar() {
        match parse(&[
            "connection",
            "create",
            "web",
            "--kind",
            "ip-mapping",
            "--ports",
            "22,443",
        ]) {
            Ok(Command::Connection(ConnectionCommand::Create { kind, ports, .. })) => {
                assert_eq!(kind, Kind::IpMapping);
                assert_eq!(ports, vec![22, 443]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&["connection", "create", "web"]).is_err(),
            "a kind is needed"
        );
        assert!(parse(&["connection", "create", "w", "--kind", "vlan"]).is_err());
        assert!(parse(&[
            "connection",
            "create",
            "w",
            "--kind",
            "gateway",
            "--internal-ip",
            "10.1"
        ])
        .is_err());
        assert!(parse(&[
            "connection",
            "create",
            "w",
            "--kind",
            "ip-mapping",
            "--ports",
            "70000"
        ])
        .is_err());
        match parse(&[
            "network",
            "set",
            "--external-pool",
            "198.18.1.1-198.18.1.9,198.18.2.1",
        ]) {
            Ok(Command::Network(NetworkCommand::Set { external_pool, .. })) => {
                assert_eq!(external_pool.unwrap().len(), 2)
            }
            other => panic!("{other:?}"),
        }
        // An empty pool is said with an empty list.
        match parse(&["network", "set", "--external-pool"]) {
            Ok(Command::Network(NetworkCommand::Set { external_pool, .. })) => {
                assert_eq!(external_pool, Some(vec![]))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn table_says_what_each_connection_forwards() {
        let c = |name: &str, kind, ports: Vec<u16>, ext: Option<&str>| ConnectionView {
            name: name.into(),
            owner: "alice".into(),
            kind,
            internal_ip: "10.47.0.2".parse().unwrap(),
            external_ip: ext.map(|e| e.parse().unwrap()),
            ports,
            active: true,
            server: None,
            created_at: 0,
        };
        let t = connections_table(&[
            c(
                "map",
                ConnectionKind::IpMapping,
                vec![22, 443],
                Some("198.18.0.5"),
            ),
            c("out", ConnectionKind::Gateway, vec![], None),
        ]);
        assert!(
            t.contains("22,443") && t.contains("198.18.0.5") && t.contains("gateway"),
            "{t}"
        );
    }
}
