//! `skiff user ...` and `skiff audit`: users, their roles, quotas, SSH keys, credentials and API
//! tokens, and the audit log of every write.

use std::io::Write;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use skiff_cluster::api::client::ApiClient;
use skiff_cluster::api::users::{ssh_key_fingerprint, TokenView, UserView};
use skiff_cluster::credential::Credential;
use skiff_cluster::identity;
use skiff_cluster::state::{AuditRecord, Quotas, UserRole};

use crate::cli::{parse_duration_secs, OutputFormat};
use crate::output;
use crate::CliError;

/// The top-level commands this module adds (flattened into `skiff`'s own).
#[derive(Debug, Subcommand, PartialEq)]
pub enum UsersCli {
    /// Users: roles, quotas, SSH keys, credentials and API tokens.
    #[command(subcommand)]
    User(UserCommand),
    /// The newest writes to the cluster: who did what, when, and the result (admin).
    Audit {
        /// How many of the newest records to show.
        #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 50)]
        limit: usize,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Sees and does everything.
    Admin,
    /// Sees and acts on their own objects.
    User,
    /// Sees their own objects, changes nothing.
    ReadOnly,
}

impl From<RoleArg> for UserRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => UserRole::Admin,
            RoleArg::User => UserRole::User,
            RoleArg::ReadOnly => UserRole::ReadOnly,
        }
    }
}

/// A quota value: a number, or `none` (unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<u64>);

fn parse_limit(text: &str) -> Result<Limit, String> {
    match text.trim() {
        "none" | "unlimited" | "-" => Ok(Limit(None)),
        t => t
            .parse::<u64>()
            .map(|v| Limit(Some(v)))
            .map_err(|_| format!("{t:?} is not a number (or `none` for unlimited)")),
    }
}

/// Quota flags; each one left out keeps its value (add: unlimited).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct QuotaArgs {
    /// Memory of all the user's servers together, in MiB (`none`: unlimited).
    #[arg(long, value_name = "MIB", value_parser = parse_limit)]
    memory: Option<Limit>,
    /// vCPUs of all the user's servers together (`none`: unlimited).
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    vcpus: Option<Limit>,
    /// Disk storage of all the user's servers together, in GiB (`none`: unlimited).
    #[arg(long, value_name = "GIB", value_parser = parse_limit)]
    storage: Option<Limit>,
    /// External IP addresses (`none`: unlimited).
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    external_ips: Option<Limit>,
}

impl QuotaArgs {
    fn apply_to(&self, q: &mut Quotas) -> Result<(), CliError> {
        let small = |v: Option<u64>, what: &str| -> Result<Option<u32>, CliError> {
            v.map(|v| {
                u32::try_from(v).map_err(|_| {
                    CliError::Io(std::io::Error::other(format!("{what} is too large")))
                })
            })
            .transpose()
        };
        if let Some(Limit(v)) = self.memory {
            q.memory_mib = v;
        }
        if let Some(Limit(v)) = self.vcpus {
            q.vcpus = small(v, "--vcpus")?;
        }
        if let Some(Limit(v)) = self.storage {
            q.storage_gib = v;
        }
        if let Some(Limit(v)) = self.external_ips {
            q.external_ips = small(v, "--external-ips")?;
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand, PartialEq)]
pub enum UserCommand {
    /// List users (admins see all, others only themselves).
    #[command(visible_alias = "ls")]
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Show one user.
    Show {
        name: String,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Show the user this credential belongs to.
    Whoami {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Add a user (admin); then make them a credential with `skiff user credential`.
    Add {
        /// Name of the user (a-z, 0-9, '-').
        name: String,
        #[arg(long, value_enum, default_value_t = RoleArg::User)]
        role: RoleArg,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
    /// Remove a user and revoke their certificates (admin; not yourself, not the last admin).
    #[command(visible_alias = "rm")]
    Remove { name: String },
    /// Disable a user: their credentials and tokens stop working (admin).
    Disable { name: String },
    /// Enable a disabled user again (admin).
    Enable { name: String },
    /// Change a user's role (admin).
    Role {
        name: String,
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Change a user's quotas (admin); flags left out keep their value.
    Quotas {
        name: String,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
    /// Manage a user's SSH public keys (for the cockpit over SSH).
    #[command(subcommand)]
    SshKey(SshKeyCommand),
    /// Make a credential file for a user: a new key made here, a certificate signed by the leader.
    Credential {
        name: String,
        /// Where to write the credential (mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Revoke the user's other credentials.
        #[arg(long)]
        replace: bool,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// API tokens for scripts (`Authorization: Bearer skt_...`).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand, PartialEq)]
pub enum SshKeyCommand {
    /// Add a public key (OpenSSH one-line format), given as text or --file.
    Add {
        name: String,
        /// The key, e.g. "ssh-ed25519 AAAA... me@laptop".
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        key: Option<String>,
        /// Read the key from this file (e.g. ~/.ssh/id_ed25519.pub).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Remove a key, given as its line or its SHA256: fingerprint.
    #[command(visible_alias = "rm")]
    Remove { name: String, key: String },
    /// List a user's keys with their fingerprints.
    #[command(visible_alias = "ls")]
    List {
        name: String,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

#[derive(Debug, Subcommand, PartialEq)]
pub enum TokenCommand {
    /// Create a token; it is printed alone on stdout, and only this once.
    Create {
        name: String,
        /// What the token is for.
        #[arg(long, default_value = "")]
        label: String,
        /// Lifetime (90s, 15m, 1h, 2d...); default: until revoked.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs)]
        ttl: Option<u64>,
    },
    /// List a user's tokens (never their secrets).
    #[command(visible_alias = "ls")]
    List {
        name: String,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Revoke a token.
    Revoke { name: String, id: String },
}

fn unlimited<T: ToString>(v: Option<T>, unit: &str) -> String {
    v.map(|v| format!("{}{unit}", v.to_string()))
        .unwrap_or_else(|| "-".into())
}

/// `skiff user list` as a table.
pub fn users_table(users: &[UserView]) -> String {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                u.name.clone(),
                u.role.to_string(),
                if u.disabled { "disabled" } else { "enabled" }.into(),
                unlimited(u.quotas.memory_mib, "M"),
                unlimited(u.quotas.vcpus, ""),
                unlimited(u.quotas.storage_gib, "G"),
                unlimited(u.quotas.external_ips, ""),
                u.ssh_keys.len().to_string(),
                u.credentials.len().to_string(),
                u.tokens.len().to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME", "ROLE", "STATE", "MEM", "VCPUS", "STORAGE", "EXT-IPS", "SSH-KEYS", "CREDS",
            "TOKENS",
        ],
        &rows,
    )
}

/// `skiff user show` for people.
pub fn user_text(u: &UserView) -> String {
    let mut s = users_table(std::slice::from_ref(u));
    for k in &u.ssh_keys {
        s.push_str(&format!(
            "ssh-key  {}  {}\n",
            ssh_key_fingerprint(k).unwrap_or_default(),
            k.split_ascii_whitespace().nth(2).unwrap_or("")
        ));
    }
    for t in &u.tokens {
        s.push_str(&format!("token    {}  {}\n", t.id, t.label));
    }
    s
}

fn tokens_table(tokens: &[TokenView]) -> String {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.label.clone(),
                output::format_unix_utc(t.created_at),
                t.expires_at
                    .map(output::format_unix_utc)
                    .unwrap_or_else(|| "never".into()),
            ]
        })
        .collect();
    output::table(&["ID", "LABEL", "CREATED", "EXPIRES"], &rows)
}

/// `skiff audit` as a table.
pub fn audit_table(records: &[AuditRecord]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.seq.to_string(),
                output::format_unix_utc(r.at),
                r.actor.clone(),
                r.op.clone(),
                r.target.clone(),
                r.result.clone(),
            ]
        })
        .collect();
    output::table(&["SEQ", "TIME", "ACTOR", "OP", "TARGET", "RESULT"], &rows)
}

fn print_user(out: &mut dyn Write, u: &UserView, fmt: OutputFormat) -> Result<(), CliError> {
    match fmt {
        OutputFormat::Json => out.write_all(output::json(u).as_bytes())?,
        OutputFormat::Table => out.write_all(user_text(u).as_bytes())?,
    }
    Ok(())
}

fn local_error(message: String) -> CliError {
    CliError::Io(std::io::Error::other(message))
}

pub async fn run(
    cmd: UsersCli,
    client: &ApiClient,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    match cmd {
        UsersCli::Audit { limit, output } => {
            let records = client.audit(Some(limit)).await?;
            match output {
                OutputFormat::Json => out.write_all(output::json(&records).as_bytes())?,
                OutputFormat::Table => out.write_all(audit_table(&records).as_bytes())?,
            }
            Ok(())
        }
        UsersCli::User(c) => run_user(c, client, out, err).await,
    }
}

async fn run_user(
    cmd: UserCommand,
    client: &ApiClient,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    match cmd {
        UserCommand::List { output } => {
            let users = client.users().await?;
            match output {
                OutputFormat::Json => out.write_all(output::json(&users).as_bytes())?,
                OutputFormat::Table => out.write_all(users_table(&users).as_bytes())?,
            }
        }
        UserCommand::Show { name, output } => print_user(out, &client.user(&name).await?, output)?,
        UserCommand::Whoami { output } => print_user(out, &client.whoami().await?, output)?,
        UserCommand::Add { name, role, quotas } => {
            let mut q = Quotas::default();
            quotas.apply_to(&mut q)?;
            let u = client.add_user(&name, role.into(), q).await?;
            writeln!(out, "added user {} ({})", u.name, u.role)?;
            writeln!(
                err,
                "make them a credential with: skiff user credential {} --out FILE",
                u.name
            )?;
        }
        UserCommand::Remove { name } => {
            let u = client.remove_user(&name).await?;
            writeln!(
                out,
                "removed user {}; their certificates are revoked",
                u.name
            )?;
        }
        UserCommand::Disable { name } => {
            let u = client.set_user_disabled(&name, true).await?;
            writeln!(out, "user {} disabled", u.name)?;
        }
        UserCommand::Enable { name } => {
            let u = client.set_user_disabled(&name, false).await?;
            writeln!(out, "user {} enabled", u.name)?;
        }
        UserCommand::Role { name, role } => {
            let u = client.set_user_role(&name, role.into()).await?;
            writeln!(out, "user {} is now {}", u.name, u.role)?;
        }
        UserCommand::Quotas { name, quotas } => {
            let mut q = client.user(&name).await?.quotas;
            quotas.apply_to(&mut q)?;
            let u = client.set_user_quotas(&name, &q).await?;
            out.write_all(users_table(std::slice::from_ref(&u)).as_bytes())?;
        }
        UserCommand::SshKey(SshKeyCommand::Add { name, key, file }) => {
            let key = match (key, file) {
                (Some(k), _) => k,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .map_err(|e| local_error(format!("cannot read {}: {e}", f.display())))?,
                (None, None) => return Err(local_error("give a key or --file".into())),
            };
            let u = client.add_ssh_key(&name, key.trim()).await?;
            let fp = u
                .ssh_keys
                .last()
                .and_then(|k| ssh_key_fingerprint(k))
                .unwrap_or_default();
            writeln!(out, "added SSH key {fp} to {}", u.name)?;
        }
        UserCommand::SshKey(SshKeyCommand::Remove { name, key }) => {
            let u = client.remove_ssh_key(&name, &key).await?;
            writeln!(out, "removed the SSH key from {}", u.name)?;
        }
        UserCommand::SshKey(SshKeyCommand::List { name, output }) => {
            let u = client.user(&name).await?;
            match output {
                OutputFormat::Json => out.write_all(output::json(&u.ssh_keys).as_bytes())?,
                OutputFormat::Table => {
                    let rows: Vec<Vec<String>> = u
                        .ssh_keys
                        .iter()
                        .map(|k| {
                            let mut parts = k.split_ascii_whitespace();
                            let kind = parts.next().unwrap_or("").to_string();
                            vec![
                                ssh_key_fingerprint(k).unwrap_or_default(),
                                kind,
                                parts.nth(1).unwrap_or("").to_string(),
                            ]
                        })
                        .collect();
                    out.write_all(
                        output::table(&["FINGERPRINT", "TYPE", "COMMENT"], &rows).as_bytes(),
                    )?;
                }
            }
        }
        UserCommand::Credential {
            name,
            out: path,
            replace,
            force,
        } => {
            if path.exists() && !force {
                return Err(local_error(format!(
                    "{} exists; pass --force to overwrite it",
                    path.display()
                )));
            }
            let kc = identity::new_key_and_csr(&name)
                .map_err(|e| local_error(format!("cannot make a key: {e}")))?;
            let issued = client.issue_credential(&name, &kc.csr_pem, replace).await?;
            let cred = Credential {
                cluster_id: issued.cluster_id,
                user: issued.user.clone(),
                endpoints: client.endpoints().to_vec(),
                ca_pem: issued.ca_pem,
                cert_pem: issued.cert_pem,
                key_pem: kc.key_pem,
            };
            identity::write_file(&path, &cred.to_toml(), true)
                .map_err(|e| local_error(e.to_string()))?;
            writeln!(
                out,
                "wrote a credential for {} to {} (certificate {})",
                issued.user,
                path.display(),
                issued.serial
            )?;
            if replace {
                writeln!(err, "the user's other credentials are revoked")?;
            }
        }
        UserCommand::Token(TokenCommand::Create { name, label, ttl }) => {
            let t = client.create_api_token(&name, &label, ttl).await?;
            writeln!(out, "{}", t.token)?;
            match t.expires_at {
                Some(at) => writeln!(
                    err,
                    "token {} expires at {}; it is shown only this once",
                    t.id,
                    output::format_unix_utc(at)
                )?,
                None => writeln!(
                    err,
                    "token {} is valid until revoked; it is shown only this once",
                    t.id
                )?,
            }
        }
        UserCommand::Token(TokenCommand::List { name, output }) => {
            let tokens = client.tokens(&name).await?;
            match output {
                OutputFormat::Json => out.write_all(output::json(&tokens).as_bytes())?,
                OutputFormat::Table => out.write_all(tokens_table(&tokens).as_bytes())?,
            }
        }
        UserCommand::Token(TokenCommand::Revoke { name, id }) => {
            let t = client.revoke_api_token(&name, &id).await?;
            writeln!(out, "revoked token {} of {name}", t.id)?;
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

    #[test]
    fn grammar() {
        let cli = parse(&[
            "user",
            "add",
            "alice",
            "--role",
            "read-only",
            "--memory",
            "4096",
            "--vcpus",
            "none",
        ])
        .unwrap();
        let Some(Command::Users(UsersCli::User(UserCommand::Add { name, role, quotas }))) =
            cli.command
        else {
            panic!("{cli:?}");
        };
        assert_eq!((name.as_str(), role), ("alice", RoleArg::ReadOnly));
        let mut q = Quotas {
            vcpus: Some(2),
            ..Default::default()
        };
        quotas.apply_to(&mut q).unwrap();
        assert_eq!(q.memory_mib, Some(4096));
        assert_eq!(q.vcpus, None);
        assert!(parse(&["user", "add", "a", "--memory", "lots"]).is_err());
        assert!(parse(&["user", "add", "a", "--role", "root"]).is_err());
        assert!(
            parse(&["user", "credential", "a"]).is_err(),
            "--out is required"
        );
        assert!(parse(&["user", "ssh-key", "add", "a"]).is_err());
        assert!(parse(&["user", "token", "create", "a", "--ttl", "1h"]).is_ok());
        assert!(parse(&["audit", "-n", "5", "-o", "json"]).is_ok());
    }
}
