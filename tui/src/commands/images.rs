//! `skiff image ...`: disk images in the nodes' pools — blank images, masters and their clones,
//! snapshots, growth, flattening, conversion into new images and removal. Every change is a task
//! on the image's node (`--wait` follows it).

use std::io::Write;

use clap::Subcommand;
use skiff_cluster::api::client::ApiClient;
use skiff_cluster::api::images::{CreateImageRequest, ImageActionRequest, ImageView};

use super::servers::{follow_task, task_line};
use crate::cli::OutputFormat;
use crate::output;
use crate::CliError;

#[derive(Debug, Subcommand, PartialEq)]
pub enum ImageCommand {
    /// List your images and the admins' masters (every image for admins).
    #[command(visible_alias = "ls")]
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Show an image: its master, clones and snapshots.
    Show {
        name: String,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Create a blank image in a pool.
    Create {
        /// Name (a-z, 0-9, '-', '_', '.').
        name: String,
        /// Size in GiB.
        #[arg(long, value_name = "GIB")]
        size_gib: u64,
        /// The node that holds it (default: a node-local pool's node, else the one with the most
        /// free space in the pool).
        #[arg(long)]
        node: Option<String>,
        /// The pool: a node-local pool's name or a shared pool's number (default: shared pool
        /// 0 when there is one, else the node's `local`).
        #[arg(long)]
        pool: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Upload a file (qcow2 without a backing file, or raw) as a new image.
    Upload {
        name: String,
        /// The file to send.
        file: std::path::PathBuf,
        /// The node that holds it (default: a node-local pool's node, else the one with the most
        /// free space in the pool).
        #[arg(long)]
        node: Option<String>,
        /// The pool: a node-local pool's name or a shared pool's number (default: shared pool
        /// 0 when there is one, else the node's `local`).
        #[arg(long)]
        pool: Option<String>,
    },
    /// Download an image (qcow2) into a new file.
    Download {
        name: String,
        /// The file to write (must not exist).
        file: std::path::PathBuf,
    },
    /// Make a linked clone (child) of a master.
    Clone {
        /// The master.
        master: String,
        /// The new image.
        name: String,
        /// The new image's pool, on the master's node (default: the master's pool).
        #[arg(long)]
        pool: Option<String>,
        /// For a master in a shared pool: the node of the new image (default: the master's).
        #[arg(long)]
        node: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Make an image a master: read-only, the base of clones.
    Master {
        name: String,
        #[arg(long)]
        wait: bool,
    },
    /// Make a master writable again (refused while clones or servers use it).
    Unmaster {
        name: String,
        #[arg(long)]
        wait: bool,
    },
    /// Take an internal snapshot of an image.
    Snapshot {
        name: String,
        snapshot: String,
        #[arg(long)]
        wait: bool,
    },
    /// Revert an image to one of its snapshots.
    Revert {
        name: String,
        snapshot: String,
        #[arg(long)]
        wait: bool,
    },
    /// Grow an image.
    Resize {
        name: String,
        #[arg(long, value_name = "GIB")]
        size_gib: u64,
        #[arg(long)]
        wait: bool,
    },
    /// Fold an image's master into it, in place: it no longer depends on the master, which can
    /// then be unmastered or removed once nothing else uses it (nothing to do for an image
    /// without a master; refused for a master and for an image with snapshots).
    Flatten {
        name: String,
        #[arg(long)]
        wait: bool,
    },
    /// Copy an image into a new standalone qcow2 image of your own (its master folded in); the
    /// image itself stays as it is.
    Convert {
        name: String,
        /// The new image.
        #[arg(long, value_name = "NEW")]
        to: String,
        /// Compress the new image's data (smaller, slower to write).
        #[arg(long)]
        compress: bool,
        /// The new image's pool, on the same node (default: the image's pool).
        #[arg(long)]
        pool: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Remove an image (refused for a master that clones or servers use).
    #[command(visible_alias = "rm")]
    Remove {
        name: String,
        #[arg(long)]
        wait: bool,
    },
}

/// Columns of `skiff image list`.
pub const IMAGE_COLUMNS: [&str; 9] = [
    "NAME",
    "OWNER",
    "NODE",
    "POOL",
    "SIZE",
    "MASTER",
    "PARENT",
    "SNAPSHOTS",
    "STATE",
];

fn state_of(i: &ImageView) -> String {
    match (i.ready, i.busy_task) {
        (_, Some(t)) => format!("busy (task {t})"),
        (true, None) => "ready".into(),
        (false, None) => "not made".into(),
    }
}

/// `skiff image list` as a table.
pub fn images_table(images: &[ImageView]) -> String {
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.owner.clone(),
                i.node.clone(),
                i.pool.clone(),
                format!("{} GiB", i.size_gib),
                if i.master { "yes" } else { "-" }.into(),
                i.parent.clone().unwrap_or_else(|| "-".into()),
                i.snapshots.len().to_string(),
                state_of(i),
            ]
        })
        .collect();
    output::table(&IMAGE_COLUMNS, &rows)
}

/// `skiff image show` as text.
pub fn image_text(i: &ImageView) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    format!(
        "name:      {}\nowner:     {}\nnode:      {} (pool {})\nsize:      {} GiB\nmaster:    {}\nparent:    {}\nclones:    {}\nsnapshots: {}\ncreated:   {}\nstate:     {}\n",
        i.name,
        i.owner,
        i.node,
        i.pool,
        i.size_gib,
        if i.master { "yes" } else { "no" },
        i.parent.as_deref().unwrap_or("-"),
        list(&i.children),
        list(&i.snapshots),
        output::format_unix_utc(i.created_at),
        state_of(i),
    )
}

/// Runs one `skiff image` command.
pub async fn run(
    cmd: ImageCommand,
    client: &ApiClient,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    use ImageCommand as C;
    let (what, name, wait, accepted) = match cmd {
        C::List { output } => {
            let images = client.images().await?;
            let text = match output {
                OutputFormat::Table => images_table(&images),
                OutputFormat::Json => output::json(&images),
            };
            out.write_all(text.as_bytes())?;
            return Ok(());
        }
        C::Show { name, output } => {
            let image = client.image(&name).await?;
            let text = match output {
                OutputFormat::Table => image_text(&image),
                OutputFormat::Json => output::json(&image),
            };
            out.write_all(text.as_bytes())?;
            return Ok(());
        }
        C::Upload {
            name,
            file,
            node,
            pool,
        } => {
            let image = client
                .upload_image(&name, node.as_deref(), pool.as_deref(), &file)
                .await?;
            writeln!(
                out,
                "uploaded {} to node {} pool {} ({} GiB)",
                image.name, image.node, image.pool, image.size_gib
            )?;
            return Ok(());
        }
        C::Download { name, file } => {
            let bytes = client.download_image(&name, &file).await?;
            writeln!(
                out,
                "downloaded {name} to {} ({bytes} bytes)",
                file.display()
            )?;
            return Ok(());
        }
        C::Create {
            name,
            size_gib,
            node,
            pool,
            wait,
        } => {
            let req = CreateImageRequest {
                name: name.clone(),
                size_gib,
                node,
                pool,
            };
            ("create", name, wait, client.create_image(&req).await?)
        }
        C::Clone {
            master,
            name,
            pool,
            node,
            wait,
        } => {
            let body = ImageActionRequest {
                name: Some(name.clone()),
                pool,
                node,
                ..Default::default()
            };
            let t = client.image_action(&master, "clone", &body).await?;
            ("clone", name, wait, t)
        }
        C::Master { name, wait } => {
            let t = client
                .image_action(&name, "master", &Default::default())
                .await?;
            ("master", name, wait, t)
        }
        C::Unmaster { name, wait } => {
            let t = client
                .image_action(&name, "unmaster", &Default::default())
                .await?;
            ("unmaster", name, wait, t)
        }
        C::Snapshot {
            name,
            snapshot,
            wait,
        } => {
            let body = ImageActionRequest {
                snapshot: Some(snapshot),
                ..Default::default()
            };
            let t = client.image_action(&name, "snapshot", &body).await?;
            ("snapshot", name, wait, t)
        }
        C::Revert {
            name,
            snapshot,
            wait,
        } => {
            let body = ImageActionRequest {
                snapshot: Some(snapshot),
                ..Default::default()
            };
            let t = client.image_action(&name, "revert", &body).await?;
            ("revert", name, wait, t)
        }
        C::Resize {
            name,
            size_gib,
            wait,
        } => {
            let body = ImageActionRequest {
                size_gib: Some(size_gib),
                ..Default::default()
            };
            let t = client.image_action(&name, "resize", &body).await?;
            ("resize", name, wait, t)
        }
        C::Flatten { name, wait } => {
            let t = client
                .image_action(&name, "flatten", &Default::default())
                .await?;
            ("flatten", name, wait, t)
        }
        C::Convert {
            name,
            to,
            compress,
            pool,
            wait,
        } => {
            let body = ImageActionRequest {
                to: Some(to.clone()),
                compress,
                pool,
                ..Default::default()
            };
            let t = client.image_action(&name, "convert", &body).await?;
            ("convert", to, wait, t)
        }
        C::Remove { name, wait } => {
            let t = client.remove_image(&name).await?;
            ("remove", name, wait, t)
        }
    };
    out.write_all(task_line(&format!("image {what}"), &name, &accepted).as_bytes())?;
    follow_task(wait, client, accepted.task_id, out, err, false).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<ImageCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied()))?;
        match cli.command {
            Some(Command::Image(c)) => Ok(c),
            other => panic!("not an image command: {other:?}"),
        }
    }

    #[test]
    fn grammar() {
        assert_eq!(
            parse(&["image", "create", "base", "--size-gib", "2", "--wait"]).ok(),
            Some(ImageCommand::Create {
                name: "base".into(),
                size_gib: 2,
                node: None,
                pool: None,
                wait: true
            })
        );
        assert_eq!(
            parse(&["image", "clone", "base", "web", "--pool", "fast"]).ok(),
            Some(ImageCommand::Clone {
                master: "base".into(),
                name: "web".into(),
                pool: Some("fast".into()),
                node: None,
                wait: false
            })
        );
        assert_eq!(
            parse(&["image", "revert", "web", "s1"]).ok(),
            Some(ImageCommand::Revert {
                name: "web".into(),
                snapshot: "s1".into(),
                wait: false
            })
        );
        assert_eq!(
            parse(&["image", "flatten", "web", "--wait"]).ok(),
            Some(ImageCommand::Flatten {
                name: "web".into(),
                wait: true
            })
        );
        assert_eq!(
            parse(&["image", "convert", "web", "--to", "web-copy", "--compress"]).ok(),
            Some(ImageCommand::Convert {
                name: "web".into(),
                to: "web-copy".into(),
                compress: true,
                pool: None,
                wait: false
            })
        );
        assert!(parse(&["image", "convert", "web"]).is_err());
        assert!(parse(&["image", "create", "base"]).is_err());
        assert!(parse(&["image", "resize", "web", "--size-gib", "x"]).is_err());
    }

    #[test]
    fn table_and_text() {
        let i = ImageView {
            name: "web".into(),
            owner: "alice".into(),
            node: "n1".into(),
            pool: "local".into(),
            size_gib: 10,
            master: false,
            parent: Some("debian".into()),
            children: vec![],
            snapshots: vec!["s1".into()],
            created_at: 0,
            ready: true,
            busy_task: Some(7),
        };
        let t = images_table(std::slice::from_ref(&i));
        assert!(
            t.contains("NAME") && t.contains("debian") && t.contains("busy (task 7)"),
            "{t}"
        );
        let text = image_text(&i);
        assert!(text.contains("snapshots: s1"), "{text}");
    }
}
