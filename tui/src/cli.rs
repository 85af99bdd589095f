//! Command-line grammar of `skiff` (clap derive) and the parsing of its argument values.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Operate a Skiff cluster: run `skiff` alone for the cockpit, or a subcommand for one action.
#[derive(Debug, Parser, PartialEq)]
#[command(name = "skiff", version, about, propagate_version = true)]
pub struct Cli {
    /// Credential file (default: $SKIFF_CRED, then ~/.config/skiff/credential).
    #[arg(long, value_name = "FILE", env = "SKIFF_CRED", global = true)]
    pub cred: Option<PathBuf>,

    /// Cockpit: refuse every operation, whatever the role allows.
    #[arg(long)]
    pub read_only: bool,

    /// Cockpit: colour theme (`default`, 16 colours; `mono`).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "default",
        env = "SKIFF_THEME"
    )]
    pub theme: String,

    /// Cockpit: key bindings file (default: ~/.config/skiff/keys.toml when it exists).
    #[arg(long, value_name = "FILE", env = "SKIFF_KEYS")]
    pub keys: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand, PartialEq)]
pub enum Command {
    /// Inspect and manage the nodes of the cluster.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Show Raft membership and leadership.
    Cluster {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Users (`skiff user ...`) and the audit log (`skiff audit`).
    #[command(flatten)]
    Users(crate::commands::users::UsersCli),
    // [users: variants]
    /// Servers (`skiff server ...`), node maintenance and evacuation.
    #[command(flatten)]
    Servers(crate::commands::servers::ServersCli),
    // [servers: variants]
    /// Disk images: blank images, masters and clones, snapshots (`skiff image ...`).
    #[command(subcommand)]
    Image(crate::commands::images::ImageCommand),
    /// Storage pools: local, node-local and shared, with their use (`skiff pool ...`, admins).
    #[command(subcommand)]
    Pool(crate::commands::pools::PoolCommand),
    /// Backups of images and stopped servers, now or daily with retention (`skiff backup ...`).
    #[command(subcommand)]
    Backup(crate::commands::backups::BackupCommand),
    /// Connections: internal IP, external IP, IP mapping, gateway (`skiff connection ...`).
    #[command(subcommand)]
    Connection(crate::commands::connections::ConnectionCommand),
    /// The internal network and the external address pool (`skiff network ...`).
    #[command(subcommand)]
    Network(crate::commands::connections::NetworkCommand),
    /// Stacks: servers installed together from a recipe, started, stopped and removed together
    /// (`skiff stack ...`).
    #[command(subcommand)]
    Stack(crate::commands::stacks::StackCommand),
    /// List, show, cancel and wait for tasks (long operations).
    #[command(subcommand)]
    Task(crate::commands::tasks::TaskCommand),
    // [tasks: variants]
    /// Open the cockpit (what `skiff` alone does).
    Tui,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand, PartialEq)]
pub enum NodeCommand {
    /// List the nodes with their role, health and load.
    #[command(visible_alias = "ls")]
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Create a join token for a new node (printed alone on stdout; expiry on stderr).
    Token {
        /// How long the token stays valid: 90s, 15m, 1h, 2d, 1h30m or plain seconds.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration_secs)]
        ttl: u64,
    },
    /// Remove a node from the cluster and revoke its certificate.
    #[command(visible_alias = "rm")]
    Remove {
        /// Name of the node.
        name: String,
    },
    /// Make nodes Raft voters.
    Promote {
        /// Names of the nodes.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Accept a change that leaves an even number of voters.
        #[arg(long)]
        allow_even: bool,
    },
    /// Make voters non-voting learners.
    Demote {
        /// Names of the nodes.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Accept a change that leaves an even number of voters.
        #[arg(long)]
        allow_even: bool,
    },
}

/// How list commands print their result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// Parses `90s`, `15m`, `1h`, `2d`, `1w`, combinations such as `1h30m`, or plain seconds.
pub fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return positive(secs, text);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {ch:?} (use s, m, h, d or w)"
                ))
            }
        };
        if digits.is_empty() {
            return Err(format!(
                "invalid duration {text:?}: a number must come before {ch:?}"
            ));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {text:?}: too long"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: {digits} has no unit (use s, m, h, d or w)"
        ));
    }
    positive(total, text)
}

fn positive(secs: u64, text: &str) -> Result<u64, String> {
    if secs == 0 {
        Err(format!(
            "invalid duration {text:?}: must be longer than zero"
        ))
    } else {
        Ok(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied()))
    }

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_means_cockpit() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.command, None);
        assert_eq!(parse(&["tui"]).unwrap().command, Some(Command::Tui));
    }

    #[test]
    fn node_list_defaults_to_table_and_takes_json() {
        assert_eq!(
            parse(&["node", "list"]).unwrap().command,
            Some(Command::Node(NodeCommand::List {
                output: OutputFormat::Table
            }))
        );
        for args in [
            &["node", "list", "-o", "json"][..],
            &["node", "list", "--output", "json"][..],
            &["node", "ls", "-o", "json"][..],
        ] {
            assert_eq!(
                parse(args).unwrap().command,
                Some(Command::Node(NodeCommand::List {
                    output: OutputFormat::Json
                })),
                "{args:?}"
            );
        }
        assert!(parse(&["node", "list", "-o", "yaml"]).is_err());
    }

    #[test]
    fn cred_is_global() {
        let cli = parse(&["node", "list", "--cred", "/tmp/c"]).unwrap();
        assert_eq!(cli.cred, Some(PathBuf::from("/tmp/c")));
        let cli = parse(&["--cred", "/tmp/d", "cluster"]).unwrap();
        assert_eq!(cli.cred, Some(PathBuf::from("/tmp/d")));
    }

    #[test]
    fn token_ttl() {
        let ttl = |args: &[&str]| match parse(args).unwrap().command {
            Some(Command::Node(NodeCommand::Token { ttl })) => ttl,
            other => panic!("{other:?}"),
        };
        assert_eq!(ttl(&["node", "token"]), 3600);
        assert_eq!(ttl(&["node", "token", "--ttl", "15m"]), 900);
        assert_eq!(ttl(&["node", "token", "--ttl", "1h30m"]), 5400);
        assert_eq!(ttl(&["node", "token", "--ttl", "120"]), 120);
        assert!(parse(&["node", "token", "--ttl", "soon"]).is_err());
        assert!(parse(&["node", "token", "--ttl", "0s"]).is_err());
    }

    #[test]
    fn promote_and_demote_need_names() {
        assert_eq!(
            parse(&["node", "promote", "a", "b", "--allow-even"])
                .unwrap()
                .command,
            Some(Command::Node(NodeCommand::Promote {
                names: vec!["a".into(), "b".into()],
                allow_even: true
            }))
        );
        assert_eq!(
            parse(&["node", "demote", "c"]).unwrap().command,
            Some(Command::Node(NodeCommand::Demote {
                names: vec!["c".into()],
                allow_even: false
            }))
        );
        let err = parse(&["node", "promote"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn remove_and_completions() {
        assert_eq!(
            parse(&["node", "remove", "n3"]).unwrap().command,
            Some(Command::Node(NodeCommand::Remove { name: "n3".into() }))
        );
        assert_eq!(
            parse(&["completions", "bash"]).unwrap().command,
            Some(Command::Completions {
                shell: clap_complete::Shell::Bash
            })
        );
        assert!(parse(&["completions", "cmd.exe"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("90s"), Ok(90));
        assert_eq!(parse_duration_secs("2d"), Ok(172_800));
        assert_eq!(parse_duration_secs("1w"), Ok(604_800));
        assert!(parse_duration_secs("").is_err());
        assert!(parse_duration_secs("h").is_err());
        assert!(parse_duration_secs("10").is_ok());
        assert!(parse_duration_secs("1h5").is_err());
        assert!(parse_duration_secs("99999999999999999999h").is_err());
    }
}
