//! `skiff stack ...`: stacks, groups of servers installed together from a recipe file (TOML) and
//! started, stopped and removed together. The recipe is read and checked here first, so a typo is
//! reported with its file and line before anything is sent; the API checks it again.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use skiff_cluster::api::client::ApiClient;
use skiff_cluster::api::stacks::{InstallStackRequest, Recipe, StackAccepted, StackView};
use skiff_cluster::state::servers::PowerState;

use super::servers::{follow_task, servers_table};
use crate::cli::OutputFormat;
use crate::output;
use crate::CliError;

#[derive(Debug, Subcommand, PartialEq)]
pub enum StackCommand {
    /// Install a stack from a recipe file (TOML): all its servers at once, or none.
    Install {
        /// The recipe (see docs/examples/web-and-db.toml).
        file: PathBuf,
        /// Name of the stack (default: the file's name without its extension); its servers are
        /// named STACK-SERVER.
        #[arg(long)]
        name: Option<String>,
        /// Start every server once created.
        #[arg(long)]
        start: bool,
        /// Follow every server's task to its end (progress on stderr): exit 0 if all succeeded.
        #[arg(long)]
        wait: bool,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// List the stacks you may see (all of them for admins).
    #[command(visible_alias = "ls")]
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Show one stack and its servers.
    Show {
        name: String,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Start every server of a stack.
    Start {
        name: String,
        /// Follow every server's task to its end (progress on stderr): exit 0 if all succeeded.
        #[arg(long)]
        wait: bool,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Shut every server of a stack down (ACPI), forcing it off after a timeout.
    Stop {
        name: String,
        /// Seconds each server gets before it is forced off (default 60).
        #[arg(long, value_name = "SECS")]
        force_after: Option<u64>,
        /// Follow every server's task to its end (progress on stderr): exit 0 if all succeeded.
        #[arg(long)]
        wait: bool,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Remove a stack with all its servers and their disks.
    #[command(visible_alias = "rm")]
    Remove {
        name: String,
        /// Follow every server's task to its end (progress on stderr): exit 0 if all succeeded.
        #[arg(long)]
        wait: bool,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

/// Columns of `skiff stack list`.
pub const STACK_COLUMNS: [&str; 5] = ["NAME", "OWNER", "SERVERS", "DESIRED", "DESCRIPTION"];

/// The line (1-based) of the `[[servers]]` header of server `index` in a recipe's text, if the
/// recipe lists its servers that way.
pub fn server_line(text: &str, index: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[servers]]"))
        .nth(index)
        .map(|(n, _)| n + 1)
}

/// Reads and checks the recipe at `path` for the stack `name` (default: the file's stem).
/// Errors name the file, and the line when it is known.
pub fn load_recipe(path: &Path, name: Option<String>) -> Result<(String, Recipe), String> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read recipe {shown}: {e}"))?;
    let recipe = Recipe::from_toml(&text).map_err(|e| match e.line {
        Some(l) => format!("{shown}:{l}:{}: {}", e.column.unwrap_or(1), e.message),
        None => format!("{shown}: {}", e.message),
    })?;
    let from_file = name.is_none();
    let name = match name {
        Some(n) => n,
        None => path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(String::from)
            .ok_or_else(|| {
                format!("cannot tell the stack's name from {shown}: give one with --name")
            })?,
    };
    recipe.check(&name).map_err(|e| {
        let hint = if from_file && e.message.starts_with("invalid stack name") {
            " (the name comes from the file's name: give another with --name)"
        } else {
            ""
        };
        match e.server.and_then(|i| server_line(&text, i)) {
            Some(l) => format!("{shown}:{l}: {e}{hint}"),
            None => format!("{shown}: {e}{hint}"),
        }
    })?;
    Ok((name, recipe))
}

/// What the servers of a stack should be doing, together: `running`, `stopped`, `suspended`, or
/// `mixed (N/M running)`.
fn desired(s: &StackView) -> String {
    let name = |p: PowerState| match p {
        PowerState::Running => "running",
        PowerState::Stopped => "stopped",
        PowerState::Suspended => "suspended",
    };
    match s.servers.first() {
        None => "-".into(),
        Some(first) if s.servers.iter().all(|m| m.desired == first.desired) => {
            name(first.desired).into()
        }
        Some(_) => format!(
            "mixed ({}/{} running)",
            s.servers
                .iter()
                .filter(|m| m.desired == PowerState::Running)
                .count(),
            s.servers.len()
        ),
    }
}

/// `skiff stack list` as a table, sorted by name.
pub fn stacks_table(stacks: &[StackView]) -> String {
    let mut sorted: Vec<&StackView> = stacks.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.owner.clone(),
                s.servers.len().to_string(),
                desired(s),
                s.description.clone(),
            ]
        })
        .collect();
    output::table(&STACK_COLUMNS, &rows)
}

/// `skiff stack show` for people: the stack, then its servers as `skiff server list` shows them.
pub fn stack_text(s: &StackView) -> String {
    let rows = [
        ("NAME", s.name.clone()),
        ("OWNER", s.owner.clone()),
        (
            "DESCRIPTION",
            if s.description.is_empty() {
                "-".into()
            } else {
                s.description.clone()
            },
        ),
        ("CREATED", output::format_unix_utc(s.created_at)),
        ("DESIRED", desired(s)),
    ];
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:11}  {v}\n"));
    }
    out.push('\n');
    out.push_str(&servers_table(&s.servers));
    out
}

/// One line per server's task: `install shop: shop-web task 12 queued (node n1)`.
pub fn tasks_text(what: &str, a: &StackAccepted) -> String {
    if a.tasks.is_empty() {
        return format!("{what} {}: nothing to do\n", a.stack);
    }
    a.tasks
        .iter()
        .map(|t| match &t.node {
            Some(n) => format!(
                "{what} {}: {} task {} queued (node {n})\n",
                a.stack, t.server, t.task_id
            ),
            None => format!(
                "{what} {}: {} task {} queued\n",
                a.stack, t.server, t.task_id
            ),
        })
        .collect()
}

/// Prints the answer to a write and, with `wait`, follows every task to its end; fails (exit 1)
/// when any of them did not succeed.
async fn accepted(
    what: &str,
    a: StackAccepted,
    wait: bool,
    format: OutputFormat,
    client: &ApiClient,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    let json = format == OutputFormat::Json;
    match format {
        OutputFormat::Json => out.write_all(output::json(&a).as_bytes())?,
        OutputFormat::Table => out.write_all(tasks_text(what, &a).as_bytes())?,
    }
    if !wait {
        return Ok(());
    }
    let mut failed = Vec::new();
    for t in &a.tasks {
        // With `-o json`, stdout stays one JSON document: the outcomes go to stderr.
        if let Err(e) = follow_task(true, client, t.task_id, out, err, json).await {
            if matches!(e, CliError::Client(_)) {
                return Err(e);
            }
            writeln!(err, "{}: {e}", t.server)?;
            failed.push(t.server.clone());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Io(io::Error::other(format!(
            "{what} {}: {} of {} tasks did not succeed ({})",
            a.stack,
            failed.len(),
            a.tasks.len(),
            failed.join(", ")
        ))))
    }
}

/// Runs one `skiff stack` command.
pub async fn run(
    cmd: StackCommand,
    client: &ApiClient,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    match cmd {
        StackCommand::Install {
            file,
            name,
            start,
            wait,
            output,
        } => {
            let (name, recipe) = load_recipe(&file, name).map_err(io::Error::other)?;
            let req = InstallStackRequest {
                name,
                recipe,
                start,
            };
            let a = client.install_stack(&req).await?;
            accepted("install", a, wait, output, client, out, err).await
        }
        StackCommand::List { output } => {
            let list = client.stacks().await?;
            out.write_all(
                match output {
                    OutputFormat::Table => stacks_table(&list),
                    OutputFormat::Json => output::json(&list),
                }
                .as_bytes(),
            )?;
            Ok(())
        }
        StackCommand::Show { name, output } => {
            let s = client.stack(&name).await?;
            out.write_all(
                match output {
                    OutputFormat::Table => stack_text(&s),
                    OutputFormat::Json => output::json(&s),
                }
                .as_bytes(),
            )?;
            Ok(())
        }
        StackCommand::Start { name, wait, output } => {
            let a = client.start_stack(&name).await?;
            accepted("start", a, wait, output, client, out, err).await
        }
        StackCommand::Stop {
            name,
            force_after,
            wait,
            output,
        } => {
            let a = client.stop_stack(&name, force_after).await?;
            accepted("stop", a, wait, output, client, out, err).await
        }
        StackCommand::Remove { name, wait, output } => {
            let a = client.remove_stack(&name).await?;
            accepted("remove", a, wait, output, client, out, err).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use skiff_cluster::api::servers::ServerView;
    use skiff_cluster::api::stacks::StackTask;
    use skiff_cluster::state::ServerSpec;

    const EXAMPLE: &str = include_str!("../../../docs/examples/web-and-db.toml");

    fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
        let p = dir.join(file);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_example_recipe_loads_and_names_the_stack_after_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "web-and-db.toml", EXAMPLE);
        let (name, recipe) = load_recipe(&p, None).unwrap();
        assert_eq!(name, "web-and-db");
        let names: Vec<String> = recipe.members(&name).into_iter().map(|m| m.0).collect();
        assert_eq!(names, ["web-and-db-web", "web-and-db-db"]);
        let (name, _) = load_recipe(&p, Some("shop".into())).unwrap();
        assert_eq!(name, "shop");
    }

    #[test]
    fn recipe_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let unknown = EXAMPLE.replacen("vcpus = 1", "vcpus = 1\ncolour = \"red\"", 1);
        let p = write(dir.path(), "shop.toml", &unknown);
        let e = load_recipe(&p, None).unwrap_err();
        let line = unknown
            .lines()
            .position(|l| l.starts_with("colour"))
            .unwrap()
            + 1;
        assert!(e.starts_with(&format!("{}:{line}:1: ", p.display())), "{e}");
        assert!(e.contains("unknown field `colour`"), "{e}");

        // A duplicate server: the line of the second [[servers]].
        let dup = EXAMPLE.replace("name = \"db\"", "name = \"web\"");
        let p = write(dir.path(), "shop.toml", &dup);
        let e = load_recipe(&p, None).unwrap_err();
        let second = server_line(&dup, 1).unwrap();
        assert!(
            e.starts_with(&format!(
                "{}:{second}: servers[1] (\"web\"): name:",
                p.display()
            )),
            "{e}"
        );

        // A file name that is no stack name says how to choose one.
        let p = write(dir.path(), "My_Stack.toml", EXAMPLE);
        let e = load_recipe(&p, None).unwrap_err();
        assert!(e.contains("invalid stack name \"My_Stack\""), "{e}");
        assert!(e.contains("--name"), "{e}");
        assert!(load_recipe(&p, Some("my-stack".into())).is_ok());

        let e = load_recipe(&dir.path().join("missing.toml"), None).unwrap_err();
        assert!(e.starts_with("cannot read recipe "), "{e}");
    }

    #[test]
    fn grammar() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied()))
                .map(|c| c.command)
        };
        assert_eq!(
            parse(&["stack", "install", "r.toml", "--name", "shop", "--start", "--wait"]).unwrap(),
            Some(Command::Stack(StackCommand::Install {
                file: "r.toml".into(),
                name: Some("shop".into()),
                start: true,
                wait: true,
                output: OutputFormat::Table
            }))
        );
        assert_eq!(
            parse(&["stack", "stop", "shop", "--force-after", "5", "-o", "json"]).unwrap(),
            Some(Command::Stack(StackCommand::Stop {
                name: "shop".into(),
                force_after: Some(5),
                wait: false,
                output: OutputFormat::Json
            }))
        );
        assert!(matches!(
            parse(&["stack", "rm", "shop"]).unwrap(),
            Some(Command::Stack(StackCommand::Remove { .. }))
        ));
        assert!(parse(&["stack", "install"]).is_err());
    }

    fn view(desired: [PowerState; 2]) -> StackView {
        let server = |name: &str, d| ServerView {
            name: name.into(),
            owner: "alice".into(),
            node: Some("n1".into()),
            desired: d,
            spec: ServerSpec::new(512, 1),
            created_at: 0,
            generation: 1,
        };
        StackView {
            name: "shop".into(),
            owner: "alice".into(),
            description: "web and db".into(),
            created_at: 0,
            servers: vec![
                server("shop-web", desired[0]),
                server("shop-db", desired[1]),
            ],
        }
    }

    #[test]
    fn tables() {
        let t = stacks_table(&[view([PowerState::Running, PowerState::Stopped])]);
        assert_eq!(
            t,
            "NAME  OWNER  SERVERS  DESIRED              DESCRIPTION\n\
             shop  alice  2        mixed (1/2 running)  web and db\n"
        );
        let t = stack_text(&view([PowerState::Running, PowerState::Running]));
        assert!(t.contains("DESIRED      running\n"), "{t}");
        assert!(t.contains("shop-db "), "{t}");
        let a = StackAccepted {
            stack: "shop".into(),
            tasks: vec![StackTask {
                server: "shop-web".into(),
                task_id: 12,
                node: Some("n1".into()),
            }],
        };
        assert_eq!(
            tasks_text("install", &a),
            "install shop: shop-web task 12 queued (node n1)\n"
        );
    }
}
