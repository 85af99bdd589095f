//! API types and client calls for stacks (`/api/v1/stacks`), and the recipe a stack is installed
//! from: a TOML file for `skiff stack install`, the same structure as JSON in the API.
//!
//! ```toml
//! description = "A web server and its database"
//! [[servers]]
//! name = "web"          # created as STACK-web
//! memory_mib = 512
//! vcpus = 1
//! image = "debian-12"   # optional: a master; the boot disk is a clone of it
//! disk_gib = 10         # optional: the boot disk's size (10 when only image is given)
//! autostart = true      # optional
//! ha = false            # optional
//! ```
//!
//! A recipe server becomes a [`ServerSpec`] exactly as `skiff server create` turns its flags into
//! one ([`RecipeServer::spec`]). [`Recipe::check`] is everything that can be checked without the
//! cluster; the API checks it again, then what needs the cluster (names free, images visible,
//! quotas, placement).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{ApiClient, ClientError};
use super::seg;
use super::servers::ServerView;
use crate::state::servers::{check_name, check_spec, DiskSpec, ServerSpec, NAME_MAX};
use crate::state::stacks::{
    check_description, check_stack_name, member_name, StackRecord, STACK_SERVERS_MAX,
};

/// Size of a boot disk whose size the recipe does not give (as `skiff server create --image`).
pub const DEFAULT_DISK_GIB: u64 = 10;
/// Largest disk a recipe may ask for (as a server's disks).
const DISK_GIB_MAX: u64 = 64 * 1024;

/// What a stack is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    #[serde(default)]
    pub description: String,
    /// 1 to 16 servers.
    pub servers: Vec<RecipeServer>,
}

/// One server of a recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeServer {
    /// The server is created as `STACK-NAME`.
    pub name: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    /// A master image: the boot disk is a clone of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Size of the boot disk in GiB (default 10 when `image` or `pool` is given; without any of
    /// the three the server has no disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<u64>,
    /// Storage pool of the boot disk (default: the node's local pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Start it when its node starts.
    #[serde(default)]
    pub autostart: bool,
    /// Restart it elsewhere when its node dies (needs shared storage).
    #[serde(default)]
    pub ha: bool,
}

impl RecipeServer {
    /// The spec this server describes: what `skiff server create NAME --memory M --vcpus N
    /// [--image I] [--disk-gib G] [--pool P] [--autostart] [--ha]` would create.
    pub fn spec(&self) -> ServerSpec {
        let mut spec = ServerSpec::new(self.memory_mib, self.vcpus);
        if self.image.is_some() || self.disk_gib.is_some() || self.pool.is_some() {
            spec.disks.push(DiskSpec {
                image: self.image.clone(),
                size_gib: self.disk_gib.unwrap_or(DEFAULT_DISK_GIB),
                pool: self.pool.clone(),
            });
        }
        spec.autostart = self.autostart;
        spec.ha = self.ha;
        spec
    }
}

/// What is wrong with a recipe: the server (its index in `servers`) and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeError {
    /// Index in `servers` of the server at fault, if one is.
    pub server: Option<usize>,
    /// `servers[1] ("db")`, the place in the recipe, if any.
    pub place: Option<String>,
    pub message: String,
}

impl std::fmt::Display for RecipeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.place {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for RecipeError {}

impl RecipeError {
    fn recipe(message: impl Into<String>) -> Self {
        RecipeError {
            server: None,
            place: None,
            message: message.into(),
        }
    }

    fn server(i: usize, s: &RecipeServer, message: impl Into<String>) -> Self {
        RecipeError {
            server: Some(i),
            place: Some(format!("servers[{i}] ({:?})", s.name)),
            message: message.into(),
        }
    }
}

/// A recipe file that is not valid TOML or does not have the recipe's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeSyntaxError {
    /// 1-based line and column of the problem, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for RecipeSyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}, column {}: ", self.column.unwrap_or(1))?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for RecipeSyntaxError {}

impl Recipe {
    /// Reads a recipe from TOML (unknown keys are refused). Says where the problem is.
    pub fn from_toml(text: &str) -> Result<Recipe, RecipeSyntaxError> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let (line, column) = match e.span() {
                Some(span) => {
                    let before = text.get(..span.start).unwrap_or_default();
                    let line = before.matches('\n').count() + 1;
                    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                    let column = before[line_start..].chars().count() + 1;
                    (Some(line), Some(column))
                }
                None => (None, None),
            };
            RecipeSyntaxError {
                line,
                column,
                message: e.message().trim_end().to_string(),
            }
        })
    }

    /// Checks everything that needs no cluster, for a stack named `stack`: the names (each
    /// server's and its full name `STACK-NAME`), no name twice, 1 to 16 servers, every figure.
    pub fn check(&self, stack: &str) -> Result<(), RecipeError> {
        check_stack_name(stack).map_err(RecipeError::recipe)?;
        check_description(&self.description).map_err(RecipeError::recipe)?;
        if self.servers.is_empty() || self.servers.len() > STACK_SERVERS_MAX {
            return Err(RecipeError::recipe(format!(
                "servers: a recipe lists 1 to {STACK_SERVERS_MAX} servers, not {}",
                self.servers.len()
            )));
        }
        for (i, s) in self.servers.iter().enumerate() {
            let err = |m: String| RecipeError::server(i, s, m);
            check_name(&s.name).map_err(|e| err(format!("name: {e}")))?;
            let full = member_name(stack, &s.name);
            if full.len() > NAME_MAX {
                return Err(err(format!(
                    "name: the server's full name {full:?} is {} characters long, at most {NAME_MAX}: shorten the stack's or the server's name",
                    full.len()
                )));
            }
            if let Some(j) = self.servers[..i].iter().position(|o| o.name == s.name) {
                return Err(err(format!(
                    "name: {:?} is also the name of servers[{j}]: each server needs its own",
                    s.name
                )));
            }
            if let Some(g) = s.disk_gib {
                if !(1..=DISK_GIB_MAX).contains(&g) {
                    return Err(err(format!(
                        "disk_gib must be between 1 and {DISK_GIB_MAX}, not {g}"
                    )));
                }
            }
            check_spec(&s.spec()).map_err(err)?;
        }
        Ok(())
    }

    /// The servers of stack `stack`: each one's full name and spec, in the recipe's order.
    pub fn members(&self, stack: &str) -> Vec<(String, ServerSpec)> {
        self.servers
            .iter()
            .map(|s| (member_name(stack, &s.name), s.spec()))
            .collect()
    }
}

/// Body of `POST /api/v1/stacks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallStackRequest {
    pub name: String,
    pub recipe: Recipe,
    /// Start every server once created.
    #[serde(default)]
    pub start: bool,
}

/// A stack as the API shows it (`GET /api/v1/stacks[/{name}]`): the record and each of its
/// servers as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackView {
    pub name: String,
    pub owner: String,
    pub description: String,
    pub created_at: u64,
    /// Its servers, in the recipe's order.
    pub servers: Vec<ServerView>,
}

impl StackView {
    /// The view of `rec`, its servers looked up in `state`.
    pub fn of(state: &crate::state::ClusterState, rec: &StackRecord) -> Self {
        StackView {
            name: rec.name.clone(),
            owner: rec.owner.clone(),
            description: rec.description.clone(),
            created_at: rec.created_at,
            servers: rec
                .servers
                .iter()
                .filter_map(|m| state.servers.get(m))
                .map(ServerView::from)
                .collect(),
        }
    }
}

/// One server's task in a [`StackAccepted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackTask {
    pub server: String,
    pub task_id: u64,
    /// The node the server is (or will be) on.
    #[serde(default)]
    pub node: Option<String>,
}

/// Answer (202) to install, start, stop and remove: one task per server of the stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackAccepted {
    pub stack: String,
    pub tasks: Vec<StackTask>,
}

/// Optional body of `POST /api/v1/stacks/{name}/stop`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackActionRequest {
    /// `stop`: seconds each server gets before it is forced off (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_after_secs: Option<u64>,
}

impl ApiClient {
    /// `POST /api/v1/stacks`: install a stack and all its servers (placed by the scheduler).
    pub async fn install_stack(
        &self,
        req: &InstallStackRequest,
    ) -> Result<StackAccepted, ClientError> {
        self.call(Method::POST, "/stacks", Some(req)).await
    }

    /// `GET /api/v1/stacks`: the stacks the caller may see (all of them for admins).
    pub async fn stacks(&self) -> Result<Vec<StackView>, ClientError> {
        self.call::<(), _>(Method::GET, "/stacks", None).await
    }

    /// `GET /api/v1/stacks/{name}`.
    pub async fn stack(&self, name: &str) -> Result<StackView, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/stacks/{}", seg(name)), None)
            .await
    }

    /// `POST /api/v1/stacks/{name}/start`: start every server of the stack.
    pub async fn start_stack(&self, name: &str) -> Result<StackAccepted, ClientError> {
        let path = format!("/stacks/{}/start", seg(name));
        self.call(Method::POST, &path, Some(&StackActionRequest::default()))
            .await
    }

    /// `POST /api/v1/stacks/{name}/stop`: shut every server of the stack down (ACPI, forced off
    /// after `force_after_secs`, default 60).
    pub async fn stop_stack(
        &self,
        name: &str,
        force_after_secs: Option<u64>,
    ) -> Result<StackAccepted, ClientError> {
        let path = format!("/stacks/{}/stop", seg(name));
        let body = StackActionRequest { force_after_secs };
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `DELETE /api/v1/stacks/{name}`: remove the stack and every one of its servers.
    pub async fn remove_stack(&self, name: &str) -> Result<StackAccepted, ClientError> {
        self.call::<(), _>(Method::DELETE, &format!("/stacks/{}", seg(name)), None)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB_AND_DB: &str = r#"
description = "A web server and its database"

[[servers]]
name = "web"
memory_mib = 512
vcpus = 1
image = "debian-12"
autostart = true

[[servers]]
name = "db"
memory_mib = 1024
vcpus = 2
disk_gib = 20
ha = true
"#;

    #[test]
    fn a_recipe_maps_to_specs_as_server_create_does() {
        let r = Recipe::from_toml(WEB_AND_DB).unwrap();
        assert_eq!(r.description, "A web server and its database");
        r.check("shop").unwrap();
        let members = r.members("shop");
        assert_eq!(members[0].0, "shop-web");
        let web = &members[0].1;
        assert_eq!(
            (web.memory_mib, web.vcpus, web.autostart, web.ha),
            (512, 1, true, false)
        );
        assert_eq!(
            web.disks,
            [DiskSpec {
                image: Some("debian-12".into()),
                size_gib: 10,
                pool: None
            }]
        );
        let db = &members[1].1;
        assert_eq!(db.disks[0].image, None);
        assert_eq!((db.disks[0].size_gib, db.ha), (20, true));
        // No disk fields: no disk, as `server create` without --image/--disk-gib/--pool.
        let bare = RecipeServer {
            name: "x".into(),
            memory_mib: 64,
            vcpus: 1,
            image: None,
            disk_gib: None,
            pool: None,
            autostart: false,
            ha: false,
        };
        assert_eq!(bare.spec(), ServerSpec::new(64, 1));
        // JSON has the same shape.
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(serde_json::from_value::<Recipe>(json).unwrap(), r);
    }

    #[test]
    fn syntax_errors_say_where() {
        let unknown = WEB_AND_DB.replace("ha = true", "ha = true\ncolour = \"red\"");
        let e = Recipe::from_toml(&unknown).unwrap_err();
        assert_eq!(e.line, Some(17), "{e}");
        assert!(e.message.contains("unknown field `colour`"), "{e}");
        assert!(e.to_string().starts_with("line 17, column 1: "), "{e}");
        let e = Recipe::from_toml("[[servers]]\nname = \"web\"\nvcpus = 1\n").unwrap_err();
        assert!(e.message.contains("missing field `memory_mib`"), "{e}");
        let e = Recipe::from_toml("servers = [").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        let e = Recipe::from_toml("[[servers]]\nname = \"w\"\nmemory_mib = -1\nvcpus = 1\n")
            .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn checks_name_the_server_and_field() {
        let r = Recipe::from_toml(WEB_AND_DB).unwrap();
        let with = |f: &dyn Fn(&mut Recipe)| {
            let mut r = r.clone();
            f(&mut r);
            r.check("shop").unwrap_err()
        };
        let e = with(&|r| r.servers[1].name = "web".into());
        assert_eq!(e.server, Some(1));
        assert_eq!(
            e.to_string(),
            "servers[1] (\"web\"): name: \"web\" is also the name of servers[0]: each server needs its own"
        );
        let e = with(&|r| r.servers[0].memory_mib = 1);
        assert!(
            e.to_string()
                .starts_with("servers[0] (\"web\"): memory_mib must be between 16"),
            "{e}"
        );
        let e = with(&|r| r.servers[1].vcpus = 0);
        assert!(
            e.to_string().contains("vcpus must be between 1 and 512"),
            "{e}"
        );
        let e = with(&|r| r.servers[1].disk_gib = Some(0));
        assert!(e.to_string().contains("disk_gib must be between 1"), "{e}");
        let e = with(&|r| r.servers[0].image = Some("../etc".into()));
        assert!(e.to_string().contains("invalid image"), "{e}");
        let e = with(&|r| r.servers[0].name = "Web".into());
        assert!(e.to_string().contains("name: invalid server name"), "{e}");
        let e = with(&|r| r.servers[0].name = "w".repeat(60));
        assert!(e.to_string().contains("at most 63"), "{e}");
        let e = with(&|r| r.servers.clear());
        assert_eq!(
            (e.server, e.to_string().contains("1 to 16 servers, not 0")),
            (None, true)
        );
        let e = with(&|r| {
            let one = r.servers[1].clone();
            r.servers = (0..17)
                .map(|i| RecipeServer {
                    name: format!("s{i}"),
                    ..one.clone()
                })
                .collect();
        });
        assert!(e.to_string().contains("not 17"), "{e}");
        let e = with(&|r| r.description = "a\nb".into());
        assert!(e.to_string().contains("description"), "{e}");
        assert!(r
            .check("Shop")
            .unwrap_err()
            .to_string()
            .contains("invalid stack name"));
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let ok: InstallStackRequest = serde_json::from_str(
            r#"{"name":"shop","recipe":{"servers":[{"name":"w","memory_mib":64,"vcpus":1}]}}"#,
        )
        .unwrap();
        assert!(!ok.start && ok.recipe.description.is_empty());
        for bad in [
            r#"{"name":"shop","recipe":{"servers":[]},"colour":1}"#,
            r#"{"name":"shop","recipe":{"servers":[],"colour":1}}"#,
            r#"{"name":"shop","recipe":{"servers":[{"name":"w","memory_mib":64,"vcpus":1,"nics":[]}]}}"#,
        ] {
            assert!(
                serde_json::from_str::<InstallStackRequest>(bad).is_err(),
                "{bad}"
            );
        }
        assert!(serde_json::from_str::<StackActionRequest>(r#"{"to":"n1"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&StackActionRequest::default()).unwrap(),
            "{}"
        );
    }
}
