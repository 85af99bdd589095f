//! Stacks: named groups of servers installed together from a recipe, owned by one user, started,
//! stopped and removed together.
//!
//! A stack adds no new kind of work on the nodes: every command here is, member by member, the
//! same change the matching [`ServerCommand`] makes (create, start, shutdown, remove), each with
//! its own `server.*` task, applied as ONE command. Either every member's change applies or none
//! does: a refusal for one member undoes the members before it and names the one refused.
//!
//! Tasks are opened in the order of the stack's members, one per member, so their ids are
//! consecutive: the first is in the outcome ([`CommandOutcome::TaskStarted`]) and member `i` has
//! `first + i`.
//!
//! A member belongs to its stack for its whole life: `server remove` on it is refused naming the
//! stack (see `docs/design/stacks.md`), so a stack's member list always names existing servers.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::servers::{self, check_name, check_spec, footprint, PowerState, ServerRecord};
use super::{ClusterState, CommandOutcome, RefusalCode, ServerCommand, ServerSpec};

/// Longest stack name (its servers are named `STACK-NAME`, at most [`servers::NAME_MAX`]).
pub const STACK_NAME_MAX: usize = 40;
/// Most servers in one stack.
pub const STACK_SERVERS_MAX: usize = 16;
/// Longest description, in characters.
pub const DESCRIPTION_MAX: usize = 256;

/// A stack in the desired state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StackRecord {
    pub name: String,
    /// The user who owns it (and every one of its servers).
    pub owner: String,
    #[serde(default)]
    pub description: String,
    /// Full names of its servers (`STACK-NAME`), in the recipe's order.
    pub servers: Vec<String>,
    pub created_at: u64,
}

/// One server of a stack being installed: its full name, what it is, and the node the leader's
/// scheduler chose.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StackMember {
    /// `STACK-NAME`.
    pub name: String,
    pub spec: ServerSpec,
    pub node: String,
}

/// Changes to stacks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "stack_op", rename_all = "snake_case")]
pub enum StackCommand {
    /// Records the stack and creates all its servers (as `ServerCommand::Create` does, each with
    /// its `server.create` task); `start`: they should run once created.
    Install {
        name: String,
        owner: String,
        #[serde(default)]
        description: String,
        servers: Vec<StackMember>,
        #[serde(default)]
        start: bool,
    },
    /// `ServerCommand::Start` for every member.
    Start { name: String },
    /// `ServerCommand::Shutdown` for every member.
    Stop { name: String, force_after_secs: u64 },
    /// `ServerCommand::Remove` for every member, then the stack record.
    Remove { name: String },
}

impl StackCommand {
    /// The operation and its target, for the audit log.
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            StackCommand::Install { name, .. } => ("stack.install", name.clone()),
            StackCommand::Start { name } => ("stack.start", name.clone()),
            StackCommand::Stop { name, .. } => ("stack.stop", name.clone()),
            StackCommand::Remove { name } => ("stack.remove", name.clone()),
        }
    }
}

/// Stacks by name.
pub type Stacks = BTreeMap<String, StackRecord>;

/// Checks a stack name: 1 to [`STACK_NAME_MAX`] of `a-z 0-9 -`, starting with a letter or digit
/// (it is the first part of its servers' names).
pub fn check_stack_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > STACK_NAME_MAX || !ok_chars || name.starts_with('-') {
        return Err(format!(
            "invalid stack name {name:?}: use 1 to {STACK_NAME_MAX} of a-z, 0-9 and '-', not starting with '-'"
        ));
    }
    Ok(())
}

/// Checks a description: at most [`DESCRIPTION_MAX`] characters, no control characters.
pub fn check_description(text: &str) -> Result<(), String> {
    if text.chars().count() > DESCRIPTION_MAX {
        return Err(format!(
            "description is longer than {DESCRIPTION_MAX} characters"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("description must be one line without control characters".into());
    }
    Ok(())
}

/// The full name of server `server` of stack `stack`.
pub fn member_name(stack: &str, server: &str) -> String {
    format!("{stack}-{server}")
}

/// The stack server `server` belongs to, if any.
pub fn stack_of<'a>(state: &'a ClusterState, server: &str) -> Option<&'a StackRecord> {
    state
        .stacks
        .values()
        .find(|s| s.servers.iter().any(|m| m == server))
}

fn refused(code: RefusalCode, message: impl Into<String>) -> CommandOutcome {
    CommandOutcome::Refused {
        code,
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> CommandOutcome {
    refused(RefusalCode::Invalid, message)
}

/// A refusal with `prefix` put before its message (other outcomes unchanged).
fn naming(outcome: CommandOutcome, prefix: &str) -> CommandOutcome {
    match outcome {
        CommandOutcome::Refused { code, message } => refused(code, format!("{prefix}{message}")),
        other => other,
    }
}

/// What a stack command may change, as it was before: restored when a member is refused, so a
/// refused command changes nothing.
struct Undo {
    servers: Vec<(String, Option<ServerRecord>)>,
    stack: Option<StackRecord>,
    next_task_id: u64,
}

impl Undo {
    fn of(state: &ClusterState, members: &[String], stack: Option<&StackRecord>) -> Self {
        Undo {
            servers: members
                .iter()
                .map(|m| (m.clone(), state.servers.get(m).cloned()))
                .collect(),
            stack: stack.cloned(),
            next_task_id: state.next_task_id,
        }
    }

    fn restore(self, state: &mut ClusterState, stack: &str) {
        for (name, rec) in self.servers {
            match rec {
                Some(r) => {
                    state.servers.insert(name, r);
                }
                None => {
                    state.servers.remove(&name);
                }
            }
        }
        match self.stack {
            Some(s) => {
                state.stacks.insert(stack.to_string(), s);
            }
            None => {
                state.stacks.remove(stack);
            }
        }
        // Every task opened since has an id from the saved counter on.
        let _ours = state.tasks.split_off(&self.next_task_id.max(1));
        state.next_task_id = self.next_task_id;
    }
}

/// Applies each member's command in order; on the first refusal restores `undo` and answers the
/// refusal naming the member. Otherwise the first task opened (or `Done`).
fn each_member(
    state: &mut ClusterState,
    stack: &str,
    commands: Vec<(String, ServerCommand)>,
    undo: Undo,
    actor: &str,
    at: u64,
) -> Result<CommandOutcome, CommandOutcome> {
    let mut first = None;
    for (m, cmd) in commands {
        match servers::apply(state, &cmd, actor, at) {
            CommandOutcome::TaskStarted { task_id } => {
                first.get_or_insert(task_id);
            }
            CommandOutcome::Refused { code, message } => {
                undo.restore(state, stack);
                return Err(refused(
                    code,
                    format!("stack {stack}, server {m}: {message}; nothing was changed"),
                ));
            }
            _ => {}
        }
    }
    Ok(match first {
        Some(task_id) => CommandOutcome::TaskStarted { task_id },
        None => CommandOutcome::Done,
    })
}

/// The stack `name`, or the refusal.
fn existing<'a>(state: &'a ClusterState, name: &str) -> Result<&'a StackRecord, CommandOutcome> {
    state
        .stacks
        .get(name)
        .ok_or_else(|| refused(RefusalCode::NotFound, format!("no stack named {name:?}")))
}

/// The members of stack `name`, each of which must exist (`what` says for what).
fn members_present(
    state: &ClusterState,
    name: &str,
    what: &str,
) -> Result<Vec<String>, CommandOutcome> {
    let rec = existing(state, name)?;
    for m in &rec.servers {
        if !state.servers.contains_key(m) {
            return Err(refused(
                RefusalCode::Conflict,
                format!("cannot {what} stack {name}: its server {m} no longer exists"),
            ));
        }
    }
    Ok(rec.servers.clone())
}

pub(super) fn apply(
    state: &mut ClusterState,
    cmd: &StackCommand,
    actor: &str,
    at: u64,
) -> CommandOutcome {
    match try_apply(state, cmd, actor, at) {
        Ok(o) | Err(o) => o,
    }
}

fn try_apply(
    state: &mut ClusterState,
    cmd: &StackCommand,
    actor: &str,
    at: u64,
) -> Result<CommandOutcome, CommandOutcome> {
    match cmd {
        StackCommand::Install {
            name,
            owner,
            description,
            servers,
            start,
        } => install(state, name, owner, description, servers, *start, actor, at),
        StackCommand::Start { name } => {
            let members = members_present(state, name, "start")?;
            for m in &members {
                if state.servers.get(m).map(|s| s.desired) == Some(PowerState::Suspended) {
                    return Err(refused(
                        RefusalCode::InvalidState,
                        format!(
                            "server {m} of stack {name} is suspended: resume it first (skiff server resume {m}); nothing was changed"
                        ),
                    ));
                }
            }
            let undo = Undo::of(state, &members, None);
            let commands = members
                .into_iter()
                .map(|m| (m.clone(), ServerCommand::Start { name: m }))
                .collect();
            each_member(state, name, commands, undo, actor, at)
        }
        StackCommand::Stop {
            name,
            force_after_secs,
        } => {
            if *force_after_secs > servers::SHUTDOWN_FORCE_AFTER_MAX {
                return Err(invalid(format!(
                    "force_after_secs is at most {}",
                    servers::SHUTDOWN_FORCE_AFTER_MAX
                )));
            }
            let members = members_present(state, name, "stop")?;
            let undo = Undo::of(state, &members, None);
            let commands = members
                .into_iter()
                .map(|m| {
                    let cmd = ServerCommand::Shutdown {
                        name: m.clone(),
                        force_after_secs: *force_after_secs,
                    };
                    (m, cmd)
                })
                .collect();
            each_member(state, name, commands, undo, actor, at)
        }
        StackCommand::Remove { name } => {
            let rec = existing(state, name)?.clone();
            // Members that are already gone (a state written before stacks kept them) are
            // skipped; the others are removed as `server remove` does.
            let members: Vec<String> = rec
                .servers
                .iter()
                .filter(|m| state.servers.contains_key(*m))
                .cloned()
                .collect();
            let undo = Undo::of(state, &members, Some(&rec));
            // Out of the stack first: `server remove` refuses a stack's member.
            state.stacks.remove(name);
            let commands = members
                .into_iter()
                .map(|m| (m.clone(), ServerCommand::Remove { name: m }))
                .collect();
            each_member(state, name, commands, undo, actor, at)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn install(
    state: &mut ClusterState,
    name: &str,
    owner: &str,
    description: &str,
    members: &[StackMember],
    start: bool,
    actor: &str,
    at: u64,
) -> Result<CommandOutcome, CommandOutcome> {
    check_stack_name(name).map_err(invalid)?;
    check_description(description).map_err(invalid)?;
    if members.is_empty() || members.len() > STACK_SERVERS_MAX {
        return Err(invalid(format!(
            "a stack has 1 to {STACK_SERVERS_MAX} servers, not {}",
            members.len()
        )));
    }
    if state.stacks.contains_key(name) {
        return Err(refused(
            RefusalCode::NameTaken,
            format!("a stack named {name:?} already exists"),
        ));
    }
    let prefix = format!("{name}-");
    let mut seen = BTreeSet::new();
    let mut total = (0, 0, 0);
    for m in members {
        let who = |e: String| invalid(format!("stack {name}, server {}: {e}", m.name));
        if m.name.strip_prefix(&prefix).is_none_or(str::is_empty) {
            return Err(who(format!("a stack's servers are named {prefix}NAME")));
        }
        check_name(&m.name).map_err(who)?;
        check_spec(&m.spec).map_err(who)?;
        if !seen.insert(m.name.as_str()) {
            return Err(who("listed twice".into()));
        }
        for image in m.spec.disks.iter().filter_map(|d| d.image.as_deref()) {
            if !state.images.get(image).is_some_and(|i| i.master && i.ready) {
                return Err(who(format!("no master image named {image:?}")));
            }
        }
        let (mem, cpu, disk) = footprint(&m.spec);
        total = (total.0 + mem, total.1 + cpu, total.2 + disk);
    }
    // The owner's quotas must hold for the whole stack at once.
    servers::check_quota(state, owner, None, total)
        .map_err(|o| naming(o, &format!("stack {name}: ")))?;
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    let undo = Undo::of(state, &names, None);
    let commands = members
        .iter()
        .map(|m| {
            let cmd = ServerCommand::Create {
                name: m.name.clone(),
                owner: owner.to_string(),
                spec: m.spec.clone(),
                node: m.node.clone(),
                start,
            };
            (m.name.clone(), cmd)
        })
        .collect();
    let out = each_member(state, name, commands, undo, actor, at)?;
    state.stacks.insert(
        name.to_string(),
        StackRecord {
            name: name.to_string(),
            owner: owner.to_string(),
            description: description.to_string(),
            servers: names,
            created_at: at,
        },
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::images::ImageRecord;
    use crate::state::servers::DiskSpec;
    use crate::state::{Command, NodeRecord, NodeRole, Proposal, Quotas, UserRecord, UserRole};

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        for (i, n) in ["n1", "n2"].iter().enumerate() {
            s.nodes.insert(
                n.to_string(),
                NodeRecord {
                    id: i as u64 + 1,
                    name: n.to_string(),
                    addr: format!("127.0.0.1:{}", 7000 + i).parse().unwrap(),
                    role: NodeRole::AdminEligible,
                    cert_serial: format!("s{i}"),
                    joined_at: 0,
                },
            );
        }
        for name in ["alice", "bob"] {
            s.users.insert(
                name.into(),
                UserRecord {
                    name: name.into(),
                    role: UserRole::User,
                    cert_serials: vec![],
                    disabled: false,
                    quotas: Quotas::default(),
                    ssh_keys: vec![],
                    api_tokens: vec![],
                },
            );
        }
        s.images.insert(
            "debian-12".into(),
            ImageRecord {
                name: "debian-12".into(),
                owner: "alice".into(),
                node: "n1".into(),
                pool: "local".into(),
                size_gib: 2,
                master: true,
                parent: None,
                snapshots: vec![],
                created_at: 0,
                ready: true,
                pending: None,
            },
        );
        s
    }

    fn member(stack: &str, name: &str, mem: u64, image: Option<&str>, node: &str) -> StackMember {
        let mut spec = ServerSpec::new(mem, 1);
        spec.disks.push(DiskSpec {
            image: image.map(Into::into),
            size_gib: 10,
            pool: None,
        });
        StackMember {
            name: member_name(stack, name),
            spec,
            node: node.into(),
        }
    }

    fn web_and_db(stack: &str) -> Vec<StackMember> {
        vec![
            member(stack, "web", 512, Some("debian-12"), "n1"),
            member(stack, "db", 1024, None, "n2"),
        ]
    }

    fn run(s: &mut ClusterState, c: StackCommand) -> CommandOutcome {
        s.apply(&Proposal::new("user:alice", 42, Command::Stack(c)))
    }

    fn install(s: &mut ClusterState, name: &str, members: Vec<StackMember>) -> CommandOutcome {
        run(
            s,
            StackCommand::Install {
                name: name.into(),
                owner: "alice".into(),
                description: "a web server and its database".into(),
                servers: members,
                start: false,
            },
        )
    }

    fn refusal(o: &CommandOutcome) -> (RefusalCode, &str) {
        match o {
            CommandOutcome::Refused { code, message } => (*code, message.as_str()),
            other => panic!("expected a refusal: {other:?}"),
        }
    }

    /// Everything but the audit log (which records refusals too).
    fn desired(s: &ClusterState) -> ClusterState {
        let mut s = s.clone();
        s.audit.clear();
        s.writes = 0;
        s
    }

    #[test]
    fn install_creates_every_server_with_its_task() {
        let mut s = state();
        let out = install(&mut s, "shop", web_and_db("shop"));
        let CommandOutcome::TaskStarted { task_id } = out else {
            panic!("{out:?}")
        };
        let rec = &s.stacks["shop"];
        assert_eq!(rec.servers, ["shop-web", "shop-db"]);
        assert_eq!(
            (rec.owner.as_str(), rec.created_at),
            ("alice", 42),
            "{rec:?}"
        );
        for (i, (server, node)) in [("shop-web", "n1"), ("shop-db", "n2")].iter().enumerate() {
            let srv = &s.servers[*server];
            assert_eq!(srv.owner, "alice");
            assert_eq!(srv.node.as_deref(), Some(*node));
            assert_eq!(srv.desired, PowerState::Stopped);
            let t = &s.tasks[&(task_id + i as u64)];
            assert_eq!(
                (t.kind.as_str(), t.target.as_str()),
                ("server.create", *server)
            );
        }
        assert_eq!(s.tasks.len(), 2);
        let last = s.audit.back().unwrap();
        assert_eq!(
            (last.op.as_str(), last.target.as_str()),
            ("stack.install", "shop")
        );
        assert_eq!(s.audit.len(), 1, "one write, one audit record");
    }

    #[test]
    fn install_with_start_asks_every_server_to_run() {
        let mut s = state();
        let out = run(
            &mut s,
            StackCommand::Install {
                name: "shop".into(),
                owner: "alice".into(),
                description: String::new(),
                servers: web_and_db("shop"),
                start: true,
            },
        );
        assert!(matches!(out, CommandOutcome::TaskStarted { .. }), "{out:?}");
        assert!(s.servers.values().all(|r| r.desired == PowerState::Running));
    }

    #[test]
    fn a_refused_install_changes_nothing() {
        let mut s = state();
        install(&mut s, "old", vec![member("old", "a", 128, None, "n1")]);
        s.servers.insert(
            "shop-taken".into(),
            ServerRecord {
                name: "shop-taken".into(),
                owner: "bob".into(),
                spec: ServerSpec::new(128, 1),
                node: Some("n2".into()),
                desired: PowerState::Stopped,
                created_at: 0,
                generation: 1,
            },
        );
        s.maintenance.insert("n2".into());
        let mut dup = web_and_db("shop");
        dup.push(member("shop", "web", 128, None, "n1"));
        let mut bad_mem = web_and_db("shop");
        bad_mem[1].spec.memory_mib = 0;
        let mut misnamed = web_and_db("shop");
        misnamed[0].name = "web".into();
        let too_many: Vec<StackMember> = (0..17)
            .map(|i| member("shop", &format!("s{i}"), 16, None, "n1"))
            .collect();
        let cases: Vec<(&str, Vec<StackMember>, RefusalCode, &str)> = vec![
            (
                "old",
                web_and_db("old"),
                RefusalCode::NameTaken,
                "a stack named \"old\"",
            ),
            (
                "Shop",
                web_and_db("Shop"),
                RefusalCode::Invalid,
                "invalid stack name",
            ),
            (
                "shop",
                vec![],
                RefusalCode::Invalid,
                "1 to 16 servers, not 0",
            ),
            ("shop", too_many, RefusalCode::Invalid, "not 17"),
            (
                "shop",
                dup,
                RefusalCode::Invalid,
                "server shop-web: listed twice",
            ),
            (
                "shop",
                bad_mem,
                RefusalCode::Invalid,
                "server shop-db: memory_mib",
            ),
            ("shop", misnamed, RefusalCode::Invalid, "named shop-NAME"),
            (
                "shop",
                vec![member("shop", "web", 128, Some("ubuntu"), "n1")],
                RefusalCode::Invalid,
                "server shop-web: no master image named \"ubuntu\"",
            ),
            // The second server's create is refused after the first was made: both undone.
            (
                "shop",
                vec![
                    member("shop", "web", 128, None, "n1"),
                    member("shop", "taken", 128, None, "n1"),
                ],
                RefusalCode::NameTaken,
                "stack shop, server shop-taken: a server named \"shop-taken\" already exists",
            ),
            (
                "shop",
                vec![
                    member("shop", "web", 128, None, "n1"),
                    member("shop", "db", 128, None, "n2"),
                ],
                RefusalCode::NodeUnavailable,
                "stack shop, server shop-db: node n2 is in maintenance",
            ),
            (
                "shop",
                vec![
                    member("shop", "web", 128, None, "n1"),
                    member("shop", "db", 128, None, "n9"),
                ],
                RefusalCode::NotFound,
                "server shop-db: no node named \"n9\"",
            ),
        ];
        for (name, members, want, msg) in cases {
            let before = desired(&s);
            let out = install(&mut s, name, members);
            let (code, message) = refusal(&out);
            assert_eq!(code, want, "{message}");
            assert!(message.contains(msg), "{message:?} should say {msg:?}");
            assert_eq!(
                desired(&s),
                before,
                "{name}: a refused install changes nothing"
            );
        }
        assert!(!s.stacks.contains_key("shop"));
    }

    #[test]
    fn quotas_hold_for_the_whole_stack() {
        let mut s = state();
        s.users.get_mut("alice").unwrap().quotas = Quotas {
            memory_mib: Some(1024),
            ..Default::default()
        };
        // 512 + 1024 fits neither alone (the db) nor together.
        let before = desired(&s);
        let out = install(&mut s, "shop", web_and_db("shop"));
        let (code, message) = refusal(&out);
        assert_eq!(code, RefusalCode::QuotaExceeded);
        assert!(
            message.starts_with(
                "stack shop: alice's memory quota is 1024 MiB: 0 in use, 1536 more asked"
            ),
            "{message}"
        );
        assert_eq!(desired(&s), before);
        // Each fits alone, not both: still refused as a whole.
        let two = vec![
            member("shop", "a", 600, None, "n1"),
            member("shop", "b", 600, None, "n2"),
        ];
        assert_eq!(
            refusal(&install(&mut s, "shop", two)).0,
            RefusalCode::QuotaExceeded
        );
        assert_eq!(desired(&s), before);
        let fits = vec![
            member("shop", "a", 512, None, "n1"),
            member("shop", "b", 512, None, "n2"),
        ];
        assert!(matches!(
            install(&mut s, "shop", fits),
            CommandOutcome::TaskStarted { .. }
        ));
    }

    #[test]
    fn start_and_stop_change_every_member() {
        let mut s = state();
        install(&mut s, "shop", web_and_db("shop"));
        // One member already runs: fine, it gets its (idempotent) start like the other.
        servers::apply(
            &mut s,
            &ServerCommand::Start {
                name: "shop-db".into(),
            },
            "user:alice",
            1,
        );
        let gens: Vec<u64> = ["shop-web", "shop-db"]
            .iter()
            .map(|n| s.servers[*n].generation)
            .collect();
        let out = run(
            &mut s,
            StackCommand::Start {
                name: "shop".into(),
            },
        );
        let CommandOutcome::TaskStarted { task_id } = out else {
            panic!("{out:?}")
        };
        for (i, n) in ["shop-web", "shop-db"].iter().enumerate() {
            assert_eq!(s.servers[*n].desired, PowerState::Running);
            assert_eq!(s.servers[*n].generation, gens[i] + 1);
            let t = &s.tasks[&(task_id + i as u64)];
            assert_eq!((t.kind.as_str(), t.target.as_str()), ("server.start", *n));
        }
        let out = run(
            &mut s,
            StackCommand::Stop {
                name: "shop".into(),
                force_after_secs: 20,
            },
        );
        let CommandOutcome::TaskStarted { task_id } = out else {
            panic!("{out:?}")
        };
        for (i, n) in ["shop-web", "shop-db"].iter().enumerate() {
            assert_eq!(s.servers[*n].desired, PowerState::Stopped);
            let t = &s.tasks[&(task_id + i as u64)];
            assert_eq!(t.kind, "server.shutdown");
            assert_eq!(servers::shutdown_force_after(t), 20);
        }
        // Stopping a stopped stack is fine too.
        assert!(matches!(
            run(
                &mut s,
                StackCommand::Stop {
                    name: "shop".into(),
                    force_after_secs: 20
                }
            ),
            CommandOutcome::TaskStarted { .. }
        ));
        assert_eq!(s.audit.back().unwrap().op, "stack.stop");
    }

    #[test]
    fn refused_start_and_stop_change_nothing() {
        let mut s = state();
        install(&mut s, "shop", web_and_db("shop"));
        s.servers.get_mut("shop-db").unwrap().desired = PowerState::Suspended;
        let before = desired(&s);
        let out = run(
            &mut s,
            StackCommand::Start {
                name: "shop".into(),
            },
        );
        let (code, message) = refusal(&out);
        assert_eq!(code, RefusalCode::InvalidState);
        assert!(
            message.contains("server shop-db of stack shop is suspended"),
            "{message}"
        );
        assert_eq!(desired(&s), before);
        let out = run(
            &mut s,
            StackCommand::Stop {
                name: "shop".into(),
                force_after_secs: servers::SHUTDOWN_FORCE_AFTER_MAX + 1,
            },
        );
        let (code, message) = refusal(&out);
        assert_eq!(code, RefusalCode::Invalid);
        assert!(
            message.contains("force_after_secs is at most 3600"),
            "{message}"
        );
        assert_eq!(desired(&s), before);
        for cmd in [
            StackCommand::Start {
                name: "nope".into(),
            },
            StackCommand::Remove {
                name: "nope".into(),
            },
        ] {
            assert_eq!(refusal(&run(&mut s, cmd)).0, RefusalCode::NotFound);
        }
    }

    #[test]
    fn members_are_removed_with_their_stack_only() {
        let mut s = state();
        install(&mut s, "shop", web_and_db("shop"));
        install(&mut s, "blog", vec![member("blog", "web", 128, None, "n1")]);
        let before = desired(&s);
        let out = s.apply(&Proposal::new(
            "user:alice",
            43,
            Command::Server(ServerCommand::Remove {
                name: "shop-db".into(),
            }),
        ));
        let (code, message) = refusal(&out);
        assert_eq!(code, RefusalCode::Conflict);
        assert!(
            message.contains("server shop-db belongs to stack shop"),
            "{message}"
        );
        assert_eq!(desired(&s), before);

        let out = run(
            &mut s,
            StackCommand::Remove {
                name: "shop".into(),
            },
        );
        let CommandOutcome::TaskStarted { task_id } = out else {
            panic!("{out:?}")
        };
        assert!(!s.stacks.contains_key("shop"));
        assert!(!s.servers.contains_key("shop-web") && !s.servers.contains_key("shop-db"));
        for (i, (n, node)) in [("shop-web", "n1"), ("shop-db", "n2")].iter().enumerate() {
            let t = &s.tasks[&(task_id + i as u64)];
            assert_eq!(
                (t.kind.as_str(), t.target.as_str(), t.node.as_deref()),
                ("server.remove", *n, Some(*node))
            );
        }
        assert!(s.stacks.contains_key("blog") && s.servers.contains_key("blog-web"));
        // The name is free again.
        assert!(matches!(
            install(&mut s, "shop", web_and_db("shop")),
            CommandOutcome::TaskStarted { .. }
        ));
    }

    #[test]
    fn names_and_descriptions() {
        for ok in ["a", "web-and-db", "0", &"a".repeat(STACK_NAME_MAX)] {
            assert!(check_stack_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a.b", &"a".repeat(STACK_NAME_MAX + 1)] {
            assert!(check_stack_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_description("A web server and its database").is_ok());
        assert!(check_description("two\nlines").is_err());
        assert!(check_description(&"x".repeat(DESCRIPTION_MAX + 1)).is_err());
    }

    #[test]
    fn wire_format_is_tagged_and_old_state_loads() {
        let c = StackCommand::Start { name: "s".into() };
        let v = serde_json::to_value(Command::Stack(c.clone())).unwrap();
        assert_eq!(
            (v["op"].as_str(), v["stack_op"].as_str()),
            (Some("stack"), Some("start"))
        );
        assert_eq!(
            serde_json::from_value::<Command>(v).unwrap(),
            Command::Stack(c)
        );
        let old = r#"{"cluster_id":"c1","ca":null,"nodes":{},"next_node_id":2,
            "join_tokens":{},"revoked":{},"crl_number":0,"users":{}}"#;
        let s: ClusterState = serde_json::from_str(old).unwrap();
        assert!(s.stacks.is_empty());
    }
}
