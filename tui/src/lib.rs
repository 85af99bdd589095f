//! `skiff`, the operator's front end to a Skiff cluster: one-shot commands (`skiff node list`...)
//! and the cockpit, a live terminal view (`skiff` alone).
//!
//! Architecture invariant: this crate talks to the cluster only through
//! [`skiff_cluster::api::client::ApiClient`].

pub mod cli;
pub mod cockpit;
pub mod commands;
pub mod output;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use skiff_cluster::api::client::{ApiClient, ClientError};
use skiff_cluster::credential::{Credential, CredentialError};

use cli::{Cli, Command, NodeCommand, OutputFormat};

/// Exit status: the API refused the request (or answered something unexpected).
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: bad usage (clap's own).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the cluster cannot be reached, or the credential is missing or unusable.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Why a `skiff` command failed; decides the exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the cockpit needs a terminal; for scripts use a subcommand (see skiff --help)")]
    NotATerminal,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Credential(_) => EXIT_UNREACHABLE,
            CliError::Client(e) => match e {
                ClientError::Api { .. } | ClientError::Decode { .. } => EXIT_REFUSED,
                ClientError::NoEndpoints
                | ClientError::Tls(_)
                | ClientError::Setup(_)
                | ClientError::Unreachable { .. }
                | ClientError::LeaderLoop { .. } => EXIT_UNREACHABLE,
            },
            CliError::NotATerminal => EXIT_USAGE,
            CliError::Io(_) => EXIT_REFUSED,
        }
    }
}

/// Entry point of the `skiff` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Environment variable that turns on diagnostics on stderr (`SKIFF_LOG=debug`), for the
/// one-shot commands only: the cockpit owns the screen.
pub const LOG_ENV: &str = "SKIFF_LOG";

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let cockpit = matches!(cli.command, None | Some(Command::Tui));
    if let Some(Command::Completions { shell }) = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "skiff", &mut io::stdout());
        return Ok(());
    }
    if cockpit && !(io::stdout().is_terminal() && io::stdin().is_terminal()) {
        return Err(CliError::NotATerminal);
    }
    if !cockpit {
        init_logging();
    }
    // The cockpit's settings are checked before anything else, so a typo is said at once.
    let (theme, keymap) = if cockpit {
        cockpit_settings(&cli)?
    } else {
        Default::default()
    };
    let path = Credential::locate(cli.cred.as_deref())?;
    let cred = Credential::load(&path)?;
    let client = ApiClient::new(&cred)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    match cli.command {
        None | Some(Command::Tui) => {
            let app = cockpit::app::App::new(
                cred.cluster_id.clone(),
                cred.user.clone(),
                client.current_endpoint(),
            )
            .read_only(cli.read_only)
            .with_theme(theme)
            .with_keymap(keymap);
            // The cockpit shows "no leader" as it happens and polls again by itself.
            let client = client.with_leader_wait(std::time::Duration::ZERO);
            cockpit::run(&runtime, Arc::new(client), app)?;
            Ok(())
        }
        Some(command) => {
            // Unlocked handles: a lock held across the await would block the runtime's worker
            // the moment it logs to stderr (SKIFF_LOG), and with it every timer and socket.
            runtime.block_on(execute(
                command,
                &client,
                &mut io::stdout(),
                &mut io::stderr(),
            ))
        }
    }
}

/// The cockpit's theme and key bindings, from `--theme` and `--keys` (or
/// `~/.config/skiff/keys.toml` when it exists); an unknown theme or a bad key file is an error
/// that names the problem.
fn cockpit_settings(
    cli: &Cli,
) -> Result<(cockpit::theme::Theme, cockpit::keymap::KeyMap), CliError> {
    let theme = cockpit::theme::Theme::by_name(&cli.theme).ok_or_else(|| {
        CliError::Io(io::Error::other(format!(
            "unknown theme {:?} (themes: default, mono)",
            cli.theme
        )))
    })?;
    let default_keys = std::env::var_os("HOME")
        .map(|h| std::path::PathBuf::from(h).join(".config/skiff/keys.toml"))
        .filter(|p| p.is_file());
    let keymap = match cli.keys.clone().or(default_keys) {
        None => cockpit::keymap::KeyMap::default(),
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                CliError::Io(io::Error::other(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            })?;
            cockpit::keymap::KeyMap::from_toml(&text)
                .map_err(|e| CliError::Io(io::Error::other(format!("{}: {e}", path.display()))))?
        }
    };
    Ok((theme, keymap))
}

fn init_logging() {
    let Ok(filter) = std::env::var(LOG_ENV) else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .try_init();
}

/// Runs one non-interactive command, printing results to `out` and notes to `err`.
pub async fn execute(
    command: Command,
    client: &ApiClient,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        Command::Node(NodeCommand::List { output }) => {
            let nodes = client.nodes().await?;
            out.write_all(
                match output {
                    OutputFormat::Table => output::nodes_table(&nodes),
                    OutputFormat::Json => output::nodes_json(&nodes),
                }
                .as_bytes(),
            )?;
        }
        Command::Node(NodeCommand::Token { ttl }) => {
            let token = client.create_token(ttl).await?;
            writeln!(out, "{}", token.token)?;
            let left = token.expires_at.saturating_sub(skiff_cluster::unix_now());
            writeln!(
                err,
                "expires at {} (in {})",
                output::format_unix_utc(token.expires_at),
                output::format_duration(left)
            )?;
        }
        Command::Node(NodeCommand::Remove { name }) => {
            let node = client.remove_node(&name).await?;
            writeln!(
                out,
                "removed node {} ({}); its certificate is revoked",
                node.name, node.address
            )?;
        }
        Command::Node(NodeCommand::Promote { names, allow_even }) => {
            let view = client.promote(names, allow_even).await?;
            out.write_all(output::cluster_text(&view).as_bytes())?;
        }
        Command::Node(NodeCommand::Demote { names, allow_even }) => {
            let view = client.demote(names, allow_even).await?;
            out.write_all(output::cluster_text(&view).as_bytes())?;
        }
        Command::Cluster { output } => {
            let view = client.cluster().await?;
            out.write_all(
                match output {
                    OutputFormat::Table => output::cluster_text(&view),
                    OutputFormat::Json => output::cluster_json(&view),
                }
                .as_bytes(),
            )?;
        }
        Command::Users(c) => commands::users::run(c, client, out, err).await?,
        // [users: arms]
        Command::Servers(c) => commands::servers::run(c, client, out, err).await?,
        // [servers: arms]
        Command::Image(c) => commands::images::run(c, client, out, err).await?,
        Command::Pool(c) => commands::pools::run(c, client, out).await?,
        Command::Backup(c) => commands::backups::run(c, client, out, err).await?,
        Command::Connection(c) => commands::connections::run(c, client, out).await?,
        Command::Network(c) => commands::connections::run_network(c, client, out).await?,
        Command::Stack(c) => commands::stacks::run(c, client, out, err).await?,
        Command::Task(c) => commands::tasks::run(c, client, out, err).await?,
        // [tasks: arms]
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "skiff", out);
        }
        Command::Tui => {
            return Err(CliError::Io(io::Error::other(
                "the cockpit needs the terminal: start it with skiff_tui::run",
            )))
        }
    }
    out.flush()?;
    Ok(())
}
