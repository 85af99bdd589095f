//! `skiff task list|show|cancel|wait`: follow the long operations (tasks) of the cluster.

use std::io::{self, Write};
use std::time::Duration;

use clap::Subcommand;
use skiff_cluster::api::client::ApiClient;
use skiff_cluster::api::tasks::{TaskRecord, TaskState, WaitError};

use crate::cli::{parse_duration_secs, OutputFormat};
use crate::output;
use crate::CliError;

#[derive(Debug, Subcommand, PartialEq)]
pub enum TaskCommand {
    /// List your tasks (every task for admins), newest first.
    #[command(visible_alias = "ls")]
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Show a task: its progress, log and result.
    Show {
        /// The task id.
        id: u64,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Cancel a queued or running task.
    Cancel {
        /// The task id.
        id: u64,
    },
    /// Wait until a task ends: exit status 0 when it succeeded, 1 when it failed or was cancelled.
    Wait {
        /// The task id.
        id: u64,
        /// Give up after this long (exit status 1): 90s, 15m, 1h...
        #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration_secs)]
        timeout: u64,
    },
}

/// Columns of `skiff task list`.
pub const TASK_COLUMNS: [&str; 8] = [
    "ID", "KIND", "TARGET", "NODE", "STATE", "PROGRESS", "OWNER", "UPDATED",
];

fn state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::Queued => "queued",
        TaskState::Running => "running",
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "cancelled",
    }
}

/// `skiff task list` as a table (in the order given).
pub fn tasks_table(tasks: &[TaskRecord]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.kind.clone(),
                t.target.clone(),
                t.node.clone().unwrap_or_else(|| "-".into()),
                state_name(t.state).into(),
                format!("{}%", t.progress),
                t.owner.clone(),
                output::format_unix_utc(t.updated_at),
            ]
        })
        .collect();
    output::table(&TASK_COLUMNS, &rows)
}

/// `skiff task show` for people: the fields, then the log.
pub fn task_text(t: &TaskRecord) -> String {
    let rows = vec![
        vec!["ID".to_owned(), t.id.to_string()],
        vec!["KIND".to_owned(), t.kind.clone()],
        vec!["TARGET".to_owned(), t.target.clone()],
        vec![
            "NODE".to_owned(),
            t.node.clone().unwrap_or_else(|| "-".into()),
        ],
        vec!["OWNER".to_owned(), t.owner.clone()],
        vec!["STATE".to_owned(), state_name(t.state).into()],
        vec!["PROGRESS".to_owned(), format!("{}%", t.progress)],
        vec!["CREATED".to_owned(), output::format_unix_utc(t.created_at)],
        vec!["UPDATED".to_owned(), output::format_unix_utc(t.updated_at)],
        vec![
            "RESULT".to_owned(),
            t.result.clone().unwrap_or_else(|| "-".into()),
        ],
    ];
    let mut text = String::new();
    for r in rows {
        text.push_str(&format!("{:<9} {}\n", r[0], r[1]));
    }
    text.push_str("LOG\n");
    for l in &t.log {
        text.push_str("  ");
        text.push_str(l);
        text.push('\n');
    }
    text
}

/// Runs one `skiff task` command.
pub async fn run(
    command: TaskCommand,
    client: &ApiClient,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        TaskCommand::List { output } => {
            let tasks = client.tasks().await?;
            out.write_all(
                match output {
                    OutputFormat::Table => tasks_table(&tasks),
                    OutputFormat::Json => output::json(&tasks),
                }
                .as_bytes(),
            )?;
        }
        TaskCommand::Show { id, output } => {
            let task = client.task(id).await?;
            out.write_all(
                match output {
                    OutputFormat::Table => task_text(&task),
                    OutputFormat::Json => output::json(&task),
                }
                .as_bytes(),
            )?;
        }
        TaskCommand::Cancel { id } => {
            let task = client.cancel_task(id).await?;
            writeln!(out, "task {} {}", task.id, state_name(task.state))?;
        }
        TaskCommand::Wait { id, timeout } => {
            let task = match client.wait_task(id, Duration::from_secs(timeout)).await {
                Ok(t) => t,
                Err(WaitError::Client(e)) => return Err(e.into()),
                Err(e) => return Err(CliError::Io(io::Error::other(e.to_string()))),
            };
            let result = task.result.clone().unwrap_or_default();
            if task.state == TaskState::Succeeded {
                writeln!(out, "task {id} succeeded: {result}")?;
            } else {
                for l in task.log.iter().rev().take(5).rev() {
                    writeln!(err, "  {l}")?;
                }
                return Err(CliError::Io(io::Error::other(format!(
                    "task {id} {}: {result}",
                    state_name(task.state)
                ))));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied()))
    }

    fn task(id: u64, state: TaskState) -> TaskRecord {
        TaskRecord {
            id,
            owner: "alice".into(),
            kind: "server.start".into(),
            target: "web".into(),
            node: Some("n1".into()),
            state,
            progress: 40,
            log: vec!["started on n1".into()],
            result: None,
            created_at: 0,
            updated_at: 60,
        }
    }

    #[test]
    fn grammar() {
        assert_eq!(
            parse(&["task", "ls", "-o", "json"]).unwrap().command,
            Some(Command::Task(TaskCommand::List {
                output: OutputFormat::Json
            }))
        );
        assert_eq!(
            parse(&["task", "wait", "7"]).unwrap().command,
            Some(Command::Task(TaskCommand::Wait {
                id: 7,
                timeout: 600
            }))
        );
        assert_eq!(
            parse(&["task", "cancel", "3"]).unwrap().command,
            Some(Command::Task(TaskCommand::Cancel { id: 3 }))
        );
        assert!(parse(&["task", "show", "x"]).is_err());
        assert!(parse(&["task", "show", "-1"]).is_err());
    }

    #[test]
    fn rendering() {
        let table = tasks_table(&[task(2, TaskState::Running), task(1, TaskState::Succeeded)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("running") && lines[1].contains("40%"));
        let text = task_text(&task(2, TaskState::Failed));
        assert!(text.contains("STATE     failed"), "{text}");
        assert!(text.ends_with("LOG\n  started on n1\n"), "{text}");
    }
}
