//! `skiff backup ...`: backups of images and (stopped) servers, now or daily with retention, and
//! their restore in place. Every change is a task on the node (`--wait` follows it).

use std::io::Write;

use clap::{Args, Subcommand};
use skiff_cluster::api::backups::{BackupTargetRequest, BackupView, ScheduleRequest};
use skiff_cluster::api::client::ApiClient;
use skiff_cluster::state::backups::{BackupSchedule, BackupTarget};

use super::servers::{follow_task, task_line};
use crate::cli::OutputFormat;
use crate::output;
use crate::CliError;

/// What a backup is of: `--image NAME`, `--server NAME` or `--pool NAME`.
#[derive(Debug, Clone, PartialEq, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// An image.
    #[arg(long)]
    image: Option<String>,
    /// A server (all its disks; it must be stopped).
    #[arg(long)]
    server: Option<String>,
    /// A whole ZFS pool (admins): a snapshot of its dataset, sent to its backup dataset.
    #[arg(long)]
    pool: Option<String>,
}

#[derive(Debug, Subcommand, PartialEq)]
pub enum BackupCommand {
    /// List your backups (every backup for admins).
    #[command(visible_alias = "ls")]
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Back up an image or a stopped server now.
    Create {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        wait: bool,
    },
    /// Put a backup's copies back in place of the image or the server's disks.
    Restore {
        id: u64,
        #[arg(long)]
        wait: bool,
    },
    /// Remove a backup.
    #[command(visible_alias = "rm")]
    Remove {
        id: u64,
        #[arg(long)]
        wait: bool,
    },
    /// Back up an image or server every day after HOUR (UTC), keeping the newest KEEP
    /// (`--off` drops the schedule).
    Schedule {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_name = "HOUR", required_unless_present = "off")]
        hour: Option<u8>,
        #[arg(long, value_name = "KEEP", required_unless_present = "off")]
        keep: Option<u32>,
        #[arg(long, conflicts_with_all = ["hour", "keep"])]
        off: bool,
    },
    /// List the daily schedules.
    Schedules {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

fn what(t: &BackupTarget) -> String {
    t.describe()
}

/// `skiff backup list` as a table.
pub fn backups_table(backups: &[BackupView]) -> String {
    let rows: Vec<Vec<String>> = backups
        .iter()
        .map(|b| {
            vec![
                b.id.to_string(),
                what(&b.target),
                b.owner.clone(),
                b.node.clone(),
                output::format_unix_utc(b.created_at),
                if b.scheduled { "daily" } else { "manual" }.into(),
                match (b.ready, b.busy_task) {
                    (_, Some(t)) => format!("busy (task {t})"),
                    (true, None) => "ready".into(),
                    (false, None) => "not made".into(),
                },
            ]
        })
        .collect();
    output::table(
        &["ID", "OF", "OWNER", "NODE", "CREATED", "KIND", "STATE"],
        &rows,
    )
}

fn schedules_table(schedules: &[BackupSchedule]) -> String {
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            vec![
                what(&s.target),
                s.owner.clone(),
                format!("{:02}:00 UTC", s.hour_utc),
                s.keep.to_string(),
            ]
        })
        .collect();
    output::table(&["OF", "OWNER", "DAILY AFTER", "KEEP"], &rows)
}

/// Runs one `skiff backup` command.
pub async fn run(
    cmd: BackupCommand,
    client: &ApiClient,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    use BackupCommand as C;
    let (label, wait, accepted) = match cmd {
        C::List { output } => {
            let backups = client.backups().await?;
            let text = match output {
                OutputFormat::Table => backups_table(&backups),
                OutputFormat::Json => output::json(&backups),
            };
            out.write_all(text.as_bytes())?;
            return Ok(());
        }
        C::Schedules { output } => {
            let s = client.backup_schedules().await?;
            let text = match output {
                OutputFormat::Table => schedules_table(&s),
                OutputFormat::Json => output::json(&s),
            };
            out.write_all(text.as_bytes())?;
            return Ok(());
        }
        C::Schedule {
            target,
            hour,
            keep,
            off,
        } => {
            let req = ScheduleRequest {
                image: target.image,
                server: target.server,
                pool: target.pool,
                hour_utc: if off { None } else { hour },
                keep: if off { None } else { keep },
            };
            let s = client.set_backup_schedule(&req).await?;
            out.write_all(schedules_table(&s).as_bytes())?;
            return Ok(());
        }
        C::Create { target, wait } => {
            let req = BackupTargetRequest {
                image: target.image.clone(),
                server: target.server.clone(),
                pool: target.pool.clone(),
            };
            let label = match (&target.image, &target.server, &target.pool) {
                (Some(i), _, _) => format!("image {i}"),
                (_, Some(s), _) => format!("server {s}"),
                (_, _, Some(p)) => format!("pool {p}"),
                _ => String::new(),
            };
            (label, wait, client.create_backup(&req).await?)
        }
        C::Restore { id, wait } => (format!("{id}"), wait, client.restore_backup(id).await?),
        C::Remove { id, wait } => (format!("{id}"), wait, client.remove_backup(id).await?),
    };
    out.write_all(task_line("backup", &label, &accepted).as_bytes())?;
    follow_task(wait, client, accepted.task_id, out, err, false).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<BackupCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied()))?;
        match cli.command {
            Some(Command::Backup(c)) => Ok(c),
            other => panic!("not a backup command: {other:?}"),
        }
    }

    #[test]
    fn grammar() {
        assert!(matches!(
            parse(&["backup", "create", "--image", "web", "--wait"]),
            Ok(BackupCommand::Create { wait: true, .. })
        ));
        // Exactly one target.
        assert!(parse(&["backup", "create"]).is_err());
        assert!(parse(&["backup", "create", "--image", "a", "--server", "b"]).is_err());
        assert!(matches!(
            parse(&["backup", "schedule", "--server", "web", "--hour", "3", "--keep", "7"]),
            Ok(BackupCommand::Schedule {
                hour: Some(3),
                keep: Some(7),
                off: false,
                ..
            })
        ));
        assert!(parse(&["backup", "schedule", "--server", "web", "--off"]).is_ok());
        assert!(parse(&["backup", "schedule", "--server", "web", "--hour", "3"]).is_err());
        assert!(parse(&["backup", "restore", "x"]).is_err());
    }
}
