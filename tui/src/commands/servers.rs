//! `skiff server ...`, `skiff maintenance NODE on|off` and `skiff evacuate NODE`: servers and
//! where they may go.

use std::io::{self, Write};
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use skiff_cluster::api::client::ApiClient;
use skiff_cluster::api::servers::{
    CreateServerRequest, ServerActionRequest, ServerView, TaskAccepted,
};
use skiff_cluster::api::tasks::{TaskRecord, TaskState, WaitError};
use skiff_cluster::state::servers::{DiskSpec, NicSpec, PowerState};

use crate::cli::OutputFormat;
use crate::output;
use crate::CliError;

/// The top-level commands this module adds (flattened into `skiff`'s own).
#[derive(Debug, Subcommand, PartialEq)]
pub enum ServersCli {
    /// Create, list and operate servers (virtual machines).
    #[command(subcommand)]
    Server(ServerCommand),
    /// Put a node in maintenance (nothing new is placed on it) or take it out (admin).
    Maintenance {
        /// Name of the node.
        node: String,
        #[arg(value_enum)]
        state: OnOff,
    },
    /// Move every server off a node, chosen by the scheduler, and put it in maintenance (admin).
    Evacuate {
        /// Name of the node.
        node: String,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Subcommand, PartialEq)]
pub enum ServerCommand {
    /// Create a server; the scheduler chooses its node unless --node is given.
    Create {
        /// Name of the server (a-z, 0-9, '-').
        name: String,
        /// Memory in MiB.
        #[arg(long, value_name = "MIB")]
        memory: u64,
        #[arg(long, value_name = "N")]
        vcpus: u32,
        /// Master image the first disk is a child of.
        #[arg(long)]
        image: Option<String>,
        /// Size of the first disk in GiB (default 10 with --image).
        #[arg(long, value_name = "GIB")]
        disk_gib: Option<u64>,
        /// Storage pool of the first disk (default: the node's local pool).
        #[arg(long)]
        pool: Option<String>,
        /// Place it on this node.
        #[arg(long)]
        node: Option<String>,
        /// Only ever place it on this node (also when moving or evacuating).
        #[arg(long, value_name = "NODE")]
        lock_to_node: Option<String>,
        /// Start it when its node starts.
        #[arg(long)]
        autostart: bool,
        /// Restart it elsewhere when its node dies (needs shared storage).
        #[arg(long)]
        ha: bool,
        /// A network interface on this connection (yours, unused; see `skiff connection`);
        /// repeat for more interfaces.
        #[arg(long = "nic", value_name = "CONNECTION")]
        nics: Vec<String>,
        /// Start it once created.
        #[arg(long)]
        start: bool,
        /// Follow the task to its end (progress on stderr): exit 0 if it succeeded, 1 if not.
        #[arg(long)]
        wait: bool,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// List the servers you may see (all of them for admins).
    #[command(visible_alias = "ls")]
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Show one server.
    Show {
        name: String,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Show the end of a server's serial console output, or attach to it both ways (--attach).
    Console {
        name: String,
        /// How much of the end of the output, in bytes (1 to 524288).
        #[arg(long, value_name = "N", default_value_t = 16384)]
        bytes: u64,
        /// Keep printing new output (every second) until interrupted.
        #[arg(short = 'f', long, conflicts_with = "attach")]
        follow: bool,
        /// Attach to the console both ways: what you type goes to the server (the terminal is in
        /// raw mode; leave with ctrl-]). Without a terminal, stdin is sent and the command ends
        /// once stdin ends and the output has settled.
        #[arg(short = 'i', long)]
        attach: bool,
    },
    /// Start a server.
    Start {
        name: String,
        /// Follow the task to its end (progress on stderr): exit 0 if it succeeded, 1 if not.
        #[arg(long)]
        wait: bool,
    },
    /// Shut a server down (ACPI), forcing it off after a timeout.
    Shutdown {
        name: String,
        /// Seconds to wait before forcing it off (default 60).
        #[arg(long, value_name = "SECS")]
        force_after: Option<u64>,
        /// Follow the task to its end (progress on stderr): exit 0 if it succeeded, 1 if not.
        #[arg(long)]
        wait: bool,
    },
    /// Force a server off.
    Destroy {
        name: String,
        /// Follow the task to its end (progress on stderr): exit 0 if it succeeded, 1 if not.
        #[arg(long)]
        wait: bool,
    },
    /// Pause a server in memory.
    Suspend {
        name: String,
        /// Follow the task to its end (progress on stderr): exit 0 if it succeeded, 1 if not.
        #[arg(long)]
        wait: bool,
    },
    /// Resume a suspended server.
    Resume {
        name: String,
        /// Follow the task to its end (progress on stderr): exit 0 if it succeeded, 1 if not.
        #[arg(long)]
        wait: bool,
    },
    /// Reboot a running server.
    Reboot {
        name: String,
        /// Follow the task to its end (progress on stderr): exit 0 if it succeeded, 1 if not.
        #[arg(long)]
        wait: bool,
    },
    /// Move a server to another node (the scheduler chooses unless --to is given).
    Move {
        name: String,
        #[arg(long, value_name = "NODE")]
        to: Option<String>,
        /// Follow the task to its end (progress on stderr): exit 0 if it succeeded, 1 if not.
        #[arg(long)]
        wait: bool,
    },
    /// Attach a new disk.
    AttachDisk {
        name: String,
        #[arg(long, value_name = "GIB")]
        size_gib: u64,
        #[arg(long)]
        image: Option<String>,
        #[arg(long)]
        pool: Option<String>,
    },
    /// Detach the disk at INDEX (see `skiff server show`).
    DetachDisk { name: String, index: usize },
    /// Put an ISO image in the CD-ROM drive.
    MountIso { name: String, iso: String },
    /// Empty the CD-ROM drive.
    UnmountIso { name: String },
    /// Remove a server and its disks.
    #[command(visible_alias = "rm")]
    Remove {
        name: String,
        /// Follow the task to its end (progress on stderr): exit 0 if it succeeded, 1 if not.
        #[arg(long)]
        wait: bool,
    },
}

/// Columns of `skiff server list`.
pub const SERVER_COLUMNS: [&str; 7] = ["NAME", "OWNER", "NODE", "DESIRED", "VCPUS", "MEM", "DISK"];

fn desired(p: PowerState) -> &'static str {
    match p {
        PowerState::Running => "running",
        PowerState::Stopped => "stopped",
        PowerState::Suspended => "suspended",
    }
}

fn disk_gib(s: &ServerView) -> u64 {
    s.spec.disks.iter().map(|d| d.size_gib).sum()
}

/// `skiff server list` as a table, sorted by name.
pub fn servers_table(servers: &[ServerView]) -> String {
    let mut sorted: Vec<&ServerView> = servers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.owner.clone(),
                s.node.clone().unwrap_or_else(|| "-".into()),
                desired(s.desired).into(),
                s.spec.vcpus.to_string(),
                format!("{} MiB", s.spec.memory_mib),
                format!("{} GiB", disk_gib(s)),
            ]
        })
        .collect();
    output::table(&SERVER_COLUMNS, &rows)
}

/// `skiff server show` for people: one field a line.
pub fn server_text(s: &ServerView) -> String {
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut rows = vec![
        vec!["NAME".to_owned(), s.name.clone()],
        vec!["OWNER".to_owned(), s.owner.clone()],
        vec!["NODE".to_owned(), opt(&s.node)],
        vec!["DESIRED".to_owned(), desired(s.desired).into()],
        vec!["VCPUS".to_owned(), s.spec.vcpus.to_string()],
        vec!["MEMORY".to_owned(), format!("{} MiB", s.spec.memory_mib)],
        vec!["LOCKED TO".to_owned(), opt(&s.spec.lock_to_node)],
        vec!["AUTOSTART".to_owned(), yes_no(s.spec.autostart).into()],
        vec!["HA".to_owned(), yes_no(s.spec.ha).into()],
        vec!["ISO".to_owned(), opt(&s.spec.iso)],
        vec!["CREATED".to_owned(), output::format_unix_utc(s.created_at)],
        vec!["GENERATION".to_owned(), s.generation.to_string()],
    ];
    for (i, d) in s.spec.disks.iter().enumerate() {
        rows.push(vec![
            format!("DISK {i}"),
            format!(
                "{} GiB, pool {}, image {}",
                d.size_gib,
                opt(&d.pool),
                opt(&d.image)
            ),
        ]);
    }
    let mut out = String::new();
    let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    for r in rows {
        out.push_str(&format!("{:width$}  {}\n", r[0], r[1]));
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub(crate) fn task_line(what: &str, name: &str, t: &TaskAccepted) -> String {
    match &t.node {
        Some(n) => format!("{what} {name}: task {} queued (node {n})\n", t.task_id),
        None => format!("{what} {name}: task {} queued\n", t.task_id),
    }
}

/// The byte a terminal sends for ctrl-]: leaves an attached console.
const LEAVE_BYTE: u8 = 0x1d;
/// Without a terminal, after stdin ended: the output counts as settled after this long without
/// any, and the command ends.
const DRAIN_IDLE: Duration = Duration::from_millis(1500);
/// ... and in any case this long after stdin ended.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

/// The local terminal in raw mode while it lives; restored when dropped (every exit path,
/// including errors and panics).
struct RawMode;

impl RawMode {
    fn enable() -> io::Result<Self> {
        ratatui::crossterm::terminal::enable_raw_mode()?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = ratatui::crossterm::terminal::disable_raw_mode();
    }
}

/// How an attached console session ended.
enum Detach {
    /// The user pressed ctrl-].
    Left,
    /// stdin ended and the output settled.
    Drained,
    /// The server's side closed (it stopped, or another session took the console over).
    Closed,
}

/// `skiff server console NAME --attach`: pipes stdin to the console and the console to stdout.
/// On a terminal, stdin is in raw mode (every key goes to the server, ctrl-C included) and
/// ctrl-] leaves; otherwise the session ends once stdin ends and the output has settled.
async fn attach_console(
    client: &ApiClient,
    name: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    use std::io::{IsTerminal, Read};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let terminal = io::stdin().is_terminal();
    let console = client.attach_console(name).await?;
    if terminal {
        writeln!(err, "attached to the console of {name}; leave with ctrl-]")?;
    } else {
        writeln!(
            err,
            "attached to the console of {name}; sending stdin, detaching when it ends"
        )?;
    }
    err.flush()?;
    let raw = if terminal {
        Some(RawMode::enable()?)
    } else {
        None
    };
    // stdin is read on a thread of its own: a blocking read must not hold the runtime (nor its
    // shutdown) once the session is over.
    let (tx, mut typed) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::Builder::new()
        .name("console-stdin".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = [0u8; 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        })?;
    let (mut from_console, mut to_console) = tokio::io::split(console);
    let mut buf = vec![0u8; 4096];
    let mut stdin_open = true;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let ended = loop {
        let settled = tokio::time::sleep(DRAIN_IDLE);
        tokio::select! {
            read = from_console.read(&mut buf) => match read {
                Ok(0) => break Ok(Detach::Closed),
                Ok(n) => {
                    out.write_all(&buf[..n])?;
                    out.flush()?;
                }
                Err(e) => break Err(e),
            },
            chunk = typed.recv(), if stdin_open => match chunk {
                Some(bytes) => {
                    let leave = if terminal {
                        bytes.iter().position(|b| *b == LEAVE_BYTE)
                    } else {
                        None
                    };
                    let send = &bytes[..leave.unwrap_or(bytes.len())];
                    if let Err(e) = to_console.write_all(send).await {
                        break Err(e);
                    }
                    if leave.is_some() {
                        break Ok(Detach::Left);
                    }
                }
                None => {
                    stdin_open = false;
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_LIMIT);
                }
            },
            () = settled, if !stdin_open => break Ok(Detach::Drained),
        }
        if drain_until.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break Ok(Detach::Drained);
        }
    };
    // Back to a normal terminal before saying anything.
    drop(raw);
    let _ = to_console.shutdown().await;
    match ended? {
        Detach::Left => writeln!(err, "\ndetached from the console of {name}")?,
        Detach::Drained => {}
        Detach::Closed => writeln!(err, "\nthe console of {name} closed")?,
    }
    Ok(())
}

/// Runs one of this module's commands.
pub async fn run(
    cmd: ServersCli,
    client: &ApiClient,
    out: &mut dyn Write,
    _err: &mut dyn Write,
) -> Result<(), CliError> {
    match cmd {
        ServersCli::Server(c) => run_server(c, client, out, _err).await,
        ServersCli::Maintenance { node, state } => {
            let v = client.set_maintenance(&node, state == OnOff::On).await?;
            writeln!(
                out,
                "node {}: maintenance {}",
                v.node,
                if v.maintenance { "on" } else { "off" }
            )?;
            Ok(())
        }
        ServersCli::Evacuate { node, output } => {
            let v = client.evacuate(&node).await?;
            match output {
                OutputFormat::Json => out.write_all(output::json(&v).as_bytes())?,
                OutputFormat::Table => {
                    writeln!(out, "node {}: maintenance on", v.node)?;
                    if v.moves.is_empty() {
                        writeln!(out, "no servers to move")?;
                    } else {
                        let rows: Vec<Vec<String>> = v
                            .moves
                            .iter()
                            .map(|m| vec![m.server.clone(), m.to.clone(), m.task_id.to_string()])
                            .collect();
                        out.write_all(output::table(&["SERVER", "TO", "TASK"], &rows).as_bytes())?;
                    }
                }
            }
            Ok(())
        }
    }
}

async fn run_server(
    cmd: ServerCommand,
    client: &ApiClient,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    let mut follow = false;
    let simple =
        |action: &'static str, name: String| (action, name, ServerActionRequest::default());
    let (action, name, body) = match cmd {
        ServerCommand::Create {
            name,
            memory,
            vcpus,
            image,
            disk_gib,
            pool,
            node,
            lock_to_node,
            autostart,
            ha,
            nics,
            start,
            wait,
            output,
        } => {
            let disks = if image.is_some() || disk_gib.is_some() || pool.is_some() {
                vec![DiskSpec {
                    image,
                    size_gib: disk_gib.unwrap_or(10),
                    pool,
                }]
            } else {
                Vec::new()
            };
            let req = CreateServerRequest {
                name: name.clone(),
                memory_mib: memory,
                vcpus,
                disks,
                nics: nics
                    .into_iter()
                    .map(|c| NicSpec {
                        connection: Some(c),
                    })
                    .collect(),
                boot_order: Vec::new(),
                autostart,
                lock_to_node,
                node,
                ha,
                iso: None,
                start,
            };
            let t = client.create_server(&req).await?;
            match output {
                OutputFormat::Json => out.write_all(output::json(&t).as_bytes())?,
                OutputFormat::Table => out.write_all(task_line("create", &name, &t).as_bytes())?,
            }
            // With `-o json`, stdout stays one JSON document: the outcome goes to stderr.
            let json = output == OutputFormat::Json;
            return follow_task(wait, client, t.task_id, out, err, json).await;
        }
        ServerCommand::List { output } => {
            let list = client.servers().await?;
            out.write_all(
                match output {
                    OutputFormat::Table => servers_table(&list),
                    OutputFormat::Json => output::json(&list),
                }
                .as_bytes(),
            )?;
            return Ok(());
        }
        ServerCommand::Show { name, output } => {
            let s = client.server(&name).await?;
            out.write_all(
                match output {
                    OutputFormat::Table => server_text(&s),
                    OutputFormat::Json => output::json(&s),
                }
                .as_bytes(),
            )?;
            return Ok(());
        }
        ServerCommand::Console {
            name, attach: true, ..
        } => {
            return attach_console(client, &name, out, err).await;
        }
        ServerCommand::Console {
            name,
            bytes,
            follow: keep,
            attach: false,
        } => {
            let mut shown = String::new();
            loop {
                let c = client.server_console(&name, Some(bytes)).await?;
                // Print what is new since the last look (all of it when the window moved on).
                let new = match c.text.find(shown.as_str()) {
                    Some(at) if !shown.is_empty() => &c.text[at + shown.len()..],
                    _ => c.text.as_str(),
                };
                out.write_all(new.as_bytes())?;
                out.flush()?;
                if !keep {
                    return Ok(());
                }
                shown = c.text;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
        ServerCommand::Remove { name, wait } => {
            let t = client.remove_server(&name).await?;
            out.write_all(task_line("remove", &name, &t).as_bytes())?;
            return follow_task(wait, client, t.task_id, out, err, false).await;
        }
        ServerCommand::Start { name, wait } => {
            follow = wait;
            simple("start", name)
        }
        ServerCommand::Destroy { name, wait } => {
            follow = wait;
            simple("destroy", name)
        }
        ServerCommand::Suspend { name, wait } => {
            follow = wait;
            simple("suspend", name)
        }
        ServerCommand::Resume { name, wait } => {
            follow = wait;
            simple("resume", name)
        }
        ServerCommand::Reboot { name, wait } => {
            follow = wait;
            simple("reboot", name)
        }
        ServerCommand::UnmountIso { name } => simple("unmount_iso", name),
        ServerCommand::Shutdown {
            name,
            force_after,
            wait,
        } => {
            follow = wait;
            (
                "shutdown",
                name,
                ServerActionRequest {
                    force_after_secs: force_after,
                    ..Default::default()
                },
            )
        }
        ServerCommand::Move { name, to, wait } => {
            follow = wait;
            (
                "move",
                name,
                ServerActionRequest {
                    to,
                    ..Default::default()
                },
            )
        }
        ServerCommand::AttachDisk {
            name,
            size_gib,
            image,
            pool,
        } => (
            "attach_disk",
            name,
            ServerActionRequest {
                disk: Some(DiskSpec {
                    image,
                    size_gib,
                    pool,
                }),
                ..Default::default()
            },
        ),
        ServerCommand::DetachDisk { name, index } => (
            "detach_disk",
            name,
            ServerActionRequest {
                index: Some(index),
                ..Default::default()
            },
        ),
        ServerCommand::MountIso { name, iso } => (
            "mount_iso",
            name,
            ServerActionRequest {
                iso: Some(iso),
                ..Default::default()
            },
        ),
    };
    let t = client.server_action(&name, action, &body).await?;
    out.write_all(task_line(&action.replace('_', "-"), &name, &t).as_bytes())?;
    follow_task(follow, client, t.task_id, out, err, false).await
}

/// How long `--wait` follows a task at most.
pub const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// `--wait`: follows task `id` to its end with [`ApiClient::wait_task_with`], printing its
/// progress and new log lines to `err` (and the outcome to `out`, or to `err` when
/// `outcome_to_stderr`); succeeds only when the task succeeded (exit status 0),
/// otherwise answers an error (exit status 1; 3 if the cluster cannot be reached).
pub(crate) async fn follow_task(
    wait: bool,
    client: &ApiClient,
    id: u64,
    out: &mut dyn Write,
    err: &mut dyn Write,
    outcome_to_stderr: bool,
) -> Result<(), CliError> {
    if !wait {
        return Ok(());
    }
    let mut seen = Progress::default();
    let waited = client
        .wait_task_with(id, WAIT_LIMIT, |t| {
            for line in seen.update(t) {
                let _ = writeln!(err, "{line}");
            }
        })
        .await;
    let task = match waited {
        Ok(t) => t,
        Err(WaitError::Client(e)) => return Err(e.into()),
        Err(e) => return Err(CliError::Io(io::Error::other(e.to_string()))),
    };
    let result = task.result.clone().unwrap_or_default();
    match task.state {
        TaskState::Succeeded => {
            let dest: &mut dyn Write = if outcome_to_stderr { err } else { out };
            writeln!(dest, "task {id} succeeded: {result}")?;
            Ok(())
        }
        other => Err(CliError::Io(io::Error::other(format!(
            "task {id} {}: {result}",
            format!("{other:?}").to_lowercase()
        )))),
    }
}

/// What `--wait` already printed of a task: its progress and the log lines.
#[derive(Default)]
struct Progress {
    progress: Option<u8>,
    state: Option<TaskState>,
    /// The log as last seen (the state keeps only the newest lines).
    log: Vec<String>,
}

impl Progress {
    /// The lines to print for a new answer: the new log lines, then the progress if it moved.
    fn update(&mut self, t: &TaskRecord) -> Vec<String> {
        let mut lines = Vec::new();
        // New lines come after those already printed; once the log is full (the state keeps
        // only the newest lines), after the last line printed, or all of it if that scrolled out.
        let start = if t.log.len() >= self.log.len() && t.log[..self.log.len()] == self.log[..] {
            self.log.len()
        } else {
            self.log
                .last()
                .and_then(|last| t.log.iter().rposition(|l| l == last))
                .map_or(0, |p| p + 1)
        };
        for l in &t.log[start..] {
            lines.push(format!("task {}: {l}", t.id));
        }
        if self.progress != Some(t.progress) || self.state != Some(t.state) {
            lines.push(format!(
                "task {} {} {}%",
                t.id,
                format!("{:?}", t.state).to_lowercase(),
                t.progress
            ));
        }
        self.progress = Some(t.progress);
        self.state = Some(t.state);
        self.log = t.log.clone();
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use skiff_cluster::state::ServerSpec;

    fn parse(args: &[&str]) -> Result<Option<Command>, clap::Error> {
        Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied())).map(|c| c.command)
    }

    fn servers(args: &[&str]) -> ServersCli {
        match parse(args).unwrap() {
            Some(Command::Servers(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn console_grammar() {
        let c = servers(&["server", "console", "web", "--bytes", "100", "-f"]);
        let ServersCli::Server(ServerCommand::Console {
            name,
            bytes,
            follow,
            ..
        }) = c
        else {
            panic!("{c:?}")
        };
        assert_eq!((name.as_str(), bytes, follow), ("web", 100, true));
        let c = servers(&["server", "console", "web"]);
        assert!(matches!(
            c,
            ServersCli::Server(ServerCommand::Console {
                bytes: 16384,
                follow: false,
                ..
            })
        ));
        assert!(parse(&["server", "console", "web", "--bytes", "x"]).is_err());
        for flag in ["--attach", "-i"] {
            let c = servers(&["server", "console", "web", flag]);
            assert!(
                matches!(
                    c,
                    ServersCli::Server(ServerCommand::Console { attach: true, .. })
                ),
                "{c:?}"
            );
        }
        assert!(parse(&["server", "console", "web", "-i", "-f"]).is_err());
    }

    #[test]
    fn create_grammar() {
        let c = servers(&[
            "server",
            "create",
            "web",
            "--memory",
            "512",
            "--vcpus",
            "1",
            "--image",
            "debian",
            "--node",
            "n2",
            "--autostart",
            "--ha",
        ]);
        let ServersCli::Server(ServerCommand::Create {
            name,
            memory,
            vcpus,
            image,
            node,
            autostart,
            ha,
            disk_gib,
            output,
            ..
        }) = c
        else {
            panic!("{c:?}")
        };
        assert_eq!(
            (
                name.as_str(),
                memory,
                vcpus,
                image.as_deref(),
                node.as_deref()
            ),
            ("web", 512, 1, Some("debian"), Some("n2"))
        );
        assert!(autostart && ha && disk_gib.is_none());
        assert_eq!(output, OutputFormat::Table);
        assert!(parse(&["server", "create", "web", "--vcpus", "1"]).is_err());
        assert!(parse(&["server", "create", "web", "--memory", "x", "--vcpus", "1"]).is_err());
    }

    #[test]
    fn other_commands() {
        let cases: Vec<(&[&str], ServersCli)> = vec![
            (
                &["server", "ls", "-o", "json"],
                ServersCli::Server(ServerCommand::List {
                    output: OutputFormat::Json,
                }),
            ),
            (
                &["server", "move", "web", "--to", "n3"],
                ServersCli::Server(ServerCommand::Move {
                    name: "web".into(),
                    to: Some("n3".into()),
                    wait: false,
                }),
            ),
            (
                &["server", "shutdown", "web", "--force-after", "5"],
                ServersCli::Server(ServerCommand::Shutdown {
                    name: "web".into(),
                    force_after: Some(5),
                    wait: false,
                }),
            ),
            (
                &["server", "rm", "web"],
                ServersCli::Server(ServerCommand::Remove {
                    name: "web".into(),
                    wait: false,
                }),
            ),
            (
                &["server", "start", "web", "--wait"],
                ServersCli::Server(ServerCommand::Start {
                    name: "web".into(),
                    wait: true,
                }),
            ),
            (
                &["maintenance", "n1", "on"],
                ServersCli::Maintenance {
                    node: "n1".into(),
                    state: OnOff::On,
                },
            ),
            (
                &["evacuate", "n1"],
                ServersCli::Evacuate {
                    node: "n1".into(),
                    output: OutputFormat::Table,
                },
            ),
        ];
        for (args, want) in cases {
            assert_eq!(servers(args), want, "{args:?}");
        }
        assert!(parse(&["maintenance", "n1", "maybe"]).is_err());
    }

    #[test]
    fn wait_prints_new_log_lines_and_progress_once() {
        let mut t = TaskRecord {
            id: 7,
            owner: "alice".into(),
            kind: "server.start".into(),
            target: "web".into(),
            node: None,
            state: TaskState::Queued,
            progress: 0,
            log: vec![],
            result: None,
            created_at: 0,
            updated_at: 0,
        };
        let mut p = Progress::default();
        assert_eq!(p.update(&t), vec!["task 7 queued 0%"]);
        assert!(p.update(&t).is_empty());
        t.state = TaskState::Running;
        t.progress = 50;
        t.log = vec!["a".into(), "b".into()];
        assert_eq!(
            p.update(&t),
            vec!["task 7: a", "task 7: b", "task 7 running 50%"]
        );
        // The log scrolled: only the line after the last one printed is new.
        t.log = vec!["b".into(), "c".into()];
        assert_eq!(p.update(&t), vec!["task 7: c"]);
    }

    #[test]
    fn table_and_text() {
        let s = ServerView {
            name: "web".into(),
            owner: "alice".into(),
            node: Some("n1".into()),
            desired: PowerState::Running,
            spec: ServerSpec {
                memory_mib: 512,
                vcpus: 2,
                disks: vec![DiskSpec {
                    image: Some("debian".into()),
                    size_gib: 10,
                    pool: None,
                }],
                nics: vec![],
                boot_order: vec![],
                autostart: false,
                lock_to_node: None,
                ha: false,
                iso: None,
            },
            created_at: 0,
            generation: 3,
        };
        assert_eq!(
            servers_table(std::slice::from_ref(&s)),
            "NAME  OWNER  NODE  DESIRED  VCPUS  MEM      DISK\n\
             web   alice  n1    running  2      512 MiB  10 GiB\n"
        );
        let text = server_text(&s);
        assert!(
            text.contains("DISK 0      10 GiB, pool -, image debian\n"),
            "{text}"
        );
        assert!(text.starts_with("NAME        web\n"), "{text}");
    }
}
