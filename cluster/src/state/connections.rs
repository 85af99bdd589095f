//! Connections in the desired state: how a server's network interface reaches the world.
//!
//! The kinds are Origo OS's:
//! - **internal IP**: an address in the cluster's internal network, reachable from the owner's
//!   other servers only;
//! - **external IP**: an internal address plus an address from the external pool routed to it
//!   whole (every port, both ways);
//! - **IP mapping**: an internal address plus an external one whose listed ports (or all of them)
//!   are forwarded to it; the server leaves through the shared gateway;
//! - **gateway**: an internal address with NAT out through the leader (no external address).
//!
//! Addresses are chosen at apply time, so every replica picks the same: the lowest free one in the
//! internal network (from its third address on: the first is the network, the second the leader's
//! gateway) and in the external pool (the ranges an admin sets with [`ConnectionCommand::SetNetwork`]).
//! A connection is attached to at most one interface of one server, of the same owner. External
//! addresses count against the owner's `external_ips` quota. Activating and deactivating change
//! what the leader's routing service (see docs/design/connections.md) puts into effect; the record
//! and its addresses stay until it is removed, which is refused while a server uses it.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::servers::check_name;
use super::{ClusterState, CommandOutcome, RefusalCode};

/// The internal network of a new cluster.
pub const DEFAULT_INTERNAL_CIDR: &str = "10.47.0.0/16";
/// Most ports an IP mapping lists.
pub const PORTS_MAX: usize = 32;
/// Most ranges in the external pool.
pub const POOL_RANGES_MAX: usize = 64;

/// What a connection does (see the module documentation).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    InternalIp,
    ExternalIp,
    IpMapping,
    Gateway,
}

impl ConnectionKind {
    /// Whether it takes an address from the external pool.
    pub fn is_external(self) -> bool {
        matches!(self, ConnectionKind::ExternalIp | ConnectionKind::IpMapping)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::InternalIp => "internal_ip",
            ConnectionKind::ExternalIp => "external_ip",
            ConnectionKind::IpMapping => "ip_mapping",
            ConnectionKind::Gateway => "gateway",
        }
    }
}

/// A connection in the desired state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub name: String,
    pub owner: String,
    pub kind: ConnectionKind,
    pub internal_ip: Ipv4Addr,
    /// With [`ConnectionKind::ExternalIp`] and [`ConnectionKind::IpMapping`].
    #[serde(default)]
    pub external_ip: Option<Ipv4Addr>,
    /// With [`ConnectionKind::IpMapping`]: the forwarded ports (TCP and UDP); empty: all of them.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Whether the leader's routing puts it into effect.
    pub active: bool,
    pub created_at: u64,
}

/// An IPv4 network, `ADDRESS/PREFIX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Parses `10.47.0.0/16`: prefix 8 to 30, no host bits set.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IPv4 network like 10.47.0.0/16");
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let network: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "the internal network {s:?} needs a prefix between /8 and /30"
            ));
        }
        let c = Ipv4Cidr { network, prefix };
        if u32::from(network) & !c.mask() != 0 {
            return Err(format!(
                "{s:?} has host bits set: the network is {}/{prefix}",
                Ipv4Addr::from(u32::from(network) & c.mask())
            ));
        }
        Ok(c)
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// The addresses connections may use: from the third to the one before broadcast.
    fn usable(&self) -> std::ops::RangeInclusive<u32> {
        let first = u32::from(self.network);
        let last = first | !self.mask();
        first + 2..=last - 1
    }

    /// The leader's address on the internal network (the servers' gateway): the second one.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A range of external addresses, `FIRST-LAST` or one address.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ipv4Range {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl Ipv4Range {
    /// Parses `198.51.100.10-198.51.100.20` or `198.51.100.10`; at most 65,536 addresses.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an address range like 198.51.100.10-198.51.100.20");
        let (a, b) = s.trim().split_once('-').unwrap_or((s.trim(), s.trim()));
        let first: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
        let last: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
        if first > last {
            return Err(format!("{s:?}: the first address is after the last"));
        }
        if u32::from(last) - u32::from(first) >= 1 << 16 {
            return Err(format!("{s:?} holds more than 65536 addresses"));
        }
        if first.is_unspecified() || first.is_multicast() || last.is_broadcast() {
            return Err(format!("{s:?} holds addresses a server cannot use"));
        }
        Ok(Ipv4Range { first, last })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.first <= ip && ip <= self.last
    }

    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.last) - u32::from(self.first)) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl std::fmt::Display for Ipv4Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// The cluster's address plan.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkSettings {
    /// `ADDRESS/PREFIX` of the internal network.
    pub internal_cidr: String,
    /// Addresses external IPs and IP mappings take, in order.
    #[serde(default)]
    pub external_pool: Vec<Ipv4Range>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            internal_cidr: DEFAULT_INTERNAL_CIDR.into(),
            external_pool: Vec::new(),
        }
    }
}

impl NetworkSettings {
    /// The internal network (the default one if the stored text is unusable, which apply never
    /// lets in).
    pub fn internal(&self) -> Ipv4Cidr {
        Ipv4Cidr::parse(&self.internal_cidr).unwrap_or(Ipv4Cidr {
            network: Ipv4Addr::new(10, 47, 0, 0),
            prefix: 16,
        })
    }

    pub fn external_total(&self) -> u64 {
        self.external_pool.iter().map(Ipv4Range::len).sum()
    }
}

/// Changes to connections and the address plan.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "connection_op", rename_all = "snake_case")]
pub enum ConnectionCommand {
    Create {
        name: String,
        owner: String,
        kind: ConnectionKind,
        /// A wanted internal address; `None`: the lowest free one.
        #[serde(default)]
        internal_ip: Option<Ipv4Addr>,
        /// A wanted external address (external kinds only); `None`: the lowest free one.
        #[serde(default)]
        external_ip: Option<Ipv4Addr>,
        #[serde(default)]
        ports: Vec<u16>,
        active: bool,
    },
    Activate {
        name: String,
    },
    Deactivate {
        name: String,
    },
    Remove {
        name: String,
    },
    /// An admin changes the internal network and/or the external pool; refused if an address in
    /// use would fall outside.
    SetNetwork {
        #[serde(default)]
        internal_cidr: Option<String>,
        #[serde(default)]
        external_pool: Option<Vec<Ipv4Range>>,
    },
}

impl ConnectionCommand {
    pub fn describe(&self) -> (&'static str, String) {
        use ConnectionCommand as C;
        match self {
            C::Create { name, .. } => ("connection.create", name.clone()),
            C::Activate { name } => ("connection.activate", name.clone()),
            C::Deactivate { name } => ("connection.deactivate", name.clone()),
            C::Remove { name } => ("connection.remove", name.clone()),
            C::SetNetwork { .. } => ("network.set", String::new()),
        }
    }
}

/// Checks a connection name (the same rules as server names).
pub fn check_connection_name(name: &str) -> Result<(), String> {
    check_name(name).map_err(|e| e.replace("server name", "connection name"))
}

/// Checks the ports of a connection of `kind`.
pub fn check_ports(kind: ConnectionKind, ports: &[u16]) -> Result<(), String> {
    if ports.is_empty() {
        return Ok(());
    }
    if kind != ConnectionKind::IpMapping {
        return Err(format!(
            "ports apply to ip_mapping connections only ({} forwards {})",
            kind.as_str(),
            if kind == ConnectionKind::ExternalIp {
                "every port"
            } else {
                "nothing in"
            }
        ));
    }
    if ports.len() > PORTS_MAX {
        return Err(format!("an IP mapping lists at most {PORTS_MAX} ports"));
    }
    if ports.contains(&0) {
        return Err("port 0 cannot be forwarded (ports are 1 to 65535)".into());
    }
    let mut seen = ports.to_vec();
    seen.sort_unstable();
    if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("port {} is listed twice", w[0]));
    }
    Ok(())
}

/// The number of external addresses `owner`'s connections take.
pub fn external_ips_of(state: &ClusterState, owner: &str) -> u32 {
    let n = state
        .connections
        .values()
        .filter(|c| c.owner == owner && c.external_ip.is_some())
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The server whose interface uses connection `name`, if any.
pub fn user_of<'a>(state: &'a ClusterState, name: &str) -> Option<&'a str> {
    state
        .servers
        .values()
        .find(|s| {
            s.spec
                .nics
                .iter()
                .any(|n| n.connection.as_deref() == Some(name))
        })
        .map(|s| s.name.as_str())
}

/// Checks the interfaces of server `server` of `owner`: each names an existing connection of the
/// same owner that no other interface (of this or another server) uses.
pub fn check_nics(
    state: &ClusterState,
    server: &str,
    owner: &str,
    nics: &[super::servers::NicSpec],
) -> Result<(), CommandOutcome> {
    let mut seen: Vec<&str> = Vec::new();
    for c in nics.iter().filter_map(|n| n.connection.as_deref()) {
        let Some(rec) = state.connections.get(c).filter(|r| r.owner == owner) else {
            return Err(CommandOutcome::refused(
                RefusalCode::NotFound,
                format!("no connection named {c:?} of {owner}: create it with `skiff connection create`"),
            ));
        };
        if seen.contains(&c) {
            return Err(CommandOutcome::refused(
                RefusalCode::Conflict,
                format!("connection {c} is given to two interfaces"),
            ));
        }
        seen.push(c);
        if let Some(other) = user_of(state, &rec.name).filter(|s| *s != server) {
            return Err(CommandOutcome::refused(
                RefusalCode::Conflict,
                format!("connection {c} is in use by server {other}"),
            ));
        }
    }
    Ok(())
}

fn internal_taken(state: &ClusterState, ip: Ipv4Addr) -> Option<&str> {
    state
        .connections
        .values()
        .find(|c| c.internal_ip == ip)
        .map(|c| c.name.as_str())
}

fn external_taken(state: &ClusterState, ip: Ipv4Addr) -> Option<&str> {
    state
        .connections
        .values()
        .find(|c| c.external_ip == Some(ip))
        .map(|c| c.name.as_str())
}

fn pick_internal(state: &ClusterState, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, String> {
    let net = state.network.internal();
    if let Some(ip) = wanted {
        if !net.contains(ip) || !net.usable().contains(&u32::from(ip)) {
            return Err(format!(
                "{ip} is not a usable address of the internal network {net} (the first two are the network and its gateway {})",
                net.gateway()
            ));
        }
        if let Some(by) = internal_taken(state, ip) {
            return Err(format!("{ip} is taken by connection {by}"));
        }
        return Ok(ip);
    }
    let used: std::collections::BTreeSet<u32> = state
        .connections
        .values()
        .map(|c| u32::from(c.internal_ip))
        .collect();
    net.usable()
        .find(|a| !used.contains(a))
        .map(Ipv4Addr::from)
        .ok_or_else(|| format!("the internal network {net} is full"))
}

fn pick_external(state: &ClusterState, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, String> {
    let pool = &state.network.external_pool;
    if pool.is_empty() {
        return Err(
            "the cluster has no external addresses: an admin sets a pool with `skiff network set --external-pool FIRST-LAST`"
                .into(),
        );
    }
    if let Some(ip) = wanted {
        if !pool.iter().any(|r| r.contains(ip)) {
            return Err(format!("{ip} is not in the external pool"));
        }
        if let Some(by) = external_taken(state, ip) {
            return Err(format!("{ip} is taken by connection {by}"));
        }
        return Ok(ip);
    }
    let used: std::collections::BTreeSet<Ipv4Addr> = state
        .connections
        .values()
        .filter_map(|c| c.external_ip)
        .collect();
    pool.iter()
        .flat_map(|r| (u32::from(r.first)..=u32::from(r.last)).map(Ipv4Addr::from))
        .find(|a| !used.contains(a))
        .ok_or_else(|| "every external address of the pool is taken".into())
}

pub(super) fn apply(state: &mut ClusterState, cmd: &ConnectionCommand, at: u64) -> CommandOutcome {
    match try_apply(state, cmd, at) {
        Ok(o) | Err(o) => o,
    }
}

fn refused(code: RefusalCode, m: impl Into<String>) -> CommandOutcome {
    CommandOutcome::refused(code, m)
}

fn existing<'a>(
    state: &'a mut ClusterState,
    name: &str,
) -> Result<&'a mut ConnectionRecord, CommandOutcome> {
    state.connections.get_mut(name).ok_or_else(|| {
        refused(
            RefusalCode::NotFound,
            format!("no connection named {name:?}"),
        )
    })
}

fn try_apply(
    state: &mut ClusterState,
    cmd: &ConnectionCommand,
    at: u64,
) -> Result<CommandOutcome, CommandOutcome> {
    use ConnectionCommand as C;
    let invalid = |m: String| refused(RefusalCode::Invalid, m);
    Ok(match cmd {
        C::Create {
            name,
            owner,
            kind,
            internal_ip,
            external_ip,
            ports,
            active,
        } => {
            check_connection_name(name).map_err(invalid)?;
            check_ports(*kind, ports).map_err(invalid)?;
            if state.connections.contains_key(name) {
                return Err(refused(
                    RefusalCode::NameTaken,
                    format!("a connection named {name:?} already exists"),
                ));
            }
            let Some(user) = state.users.get(owner) else {
                return Err(refused(
                    RefusalCode::NotFound,
                    format!("no user named {owner:?}"),
                ));
            };
            if external_ip.is_some() && !kind.is_external() {
                return Err(invalid(format!(
                    "a {} connection has no external address",
                    kind.as_str()
                )));
            }
            let external = if kind.is_external() {
                if let Some(limit) = user.quotas.external_ips {
                    let used = external_ips_of(state, owner);
                    if used >= limit {
                        return Err(refused(
                            RefusalCode::QuotaExceeded,
                            format!(
                                "{owner} already has {used} external IP(s), the quota is {limit}"
                            ),
                        ));
                    }
                }
                Some(
                    pick_external(state, *external_ip)
                        .map_err(|m| refused(RefusalCode::AddressTaken, m))?,
                )
            } else {
                None
            };
            let internal = pick_internal(state, *internal_ip)
                .map_err(|m| refused(RefusalCode::AddressTaken, m))?;
            state.connections.insert(
                name.clone(),
                ConnectionRecord {
                    name: name.clone(),
                    owner: owner.clone(),
                    kind: *kind,
                    internal_ip: internal,
                    external_ip: external,
                    ports: ports.clone(),
                    active: *active,
                    created_at: at,
                },
            );
            CommandOutcome::Done
        }
        C::Activate { name } => {
            existing(state, name)?.active = true;
            CommandOutcome::Done
        }
        C::Deactivate { name } => {
            existing(state, name)?.active = false;
            CommandOutcome::Done
        }
        C::Remove { name } => {
            existing(state, name)?;
            if let Some(server) = user_of(state, name) {
                return Err(refused(
                    RefusalCode::Conflict,
                    format!("connection {name} is in use by server {server}: detach it or remove the server first"),
                ));
            }
            state.connections.remove(name);
            CommandOutcome::Done
        }
        C::SetNetwork {
            internal_cidr,
            external_pool,
        } => {
            let mut next = state.network.clone();
            if let Some(cidr) = internal_cidr {
                let net = Ipv4Cidr::parse(cidr).map_err(invalid)?;
                if let Some(c) = state.connections.values().find(|c| {
                    !net.contains(c.internal_ip) || !net.usable().contains(&c.internal_ip.into())
                }) {
                    return Err(refused(
                        RefusalCode::Conflict,
                        format!(
                            "connection {} uses {}, which is not a usable address of {net}",
                            c.name, c.internal_ip
                        ),
                    ));
                }
                next.internal_cidr = net.to_string();
            }
            if let Some(pool) = external_pool {
                if pool.len() > POOL_RANGES_MAX {
                    return Err(invalid(format!(
                        "the external pool holds at most {POOL_RANGES_MAX} ranges"
                    )));
                }
                for (i, r) in pool.iter().enumerate() {
                    Ipv4Range::parse(&r.to_string()).map_err(invalid)?;
                    if let Some(o) = pool[..i]
                        .iter()
                        .find(|o| o.first <= r.last && r.first <= o.last)
                    {
                        return Err(invalid(format!("the ranges {o} and {r} overlap")));
                    }
                }
                if let Some(c) = state.connections.values().find(|c| {
                    c.external_ip
                        .is_some_and(|ip| !pool.iter().any(|r| r.contains(ip)))
                }) {
                    return Err(refused(
                        RefusalCode::Conflict,
                        format!(
                            "connection {} uses external address {}, which the new pool leaves out",
                            c.name,
                            c.external_ip.map(|i| i.to_string()).unwrap_or_default()
                        ),
                    ));
                }
                next.external_pool = pool.clone();
            }
            state.network = next;
            CommandOutcome::Done
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::servers::{NicSpec, ServerCommand, ServerSpec};
    use crate::state::{Command, Proposal, Quotas, UserCommand, UserRole};

    fn run(s: &mut ClusterState, c: ConnectionCommand) -> CommandOutcome {
        s.apply(&Proposal::new("user:admin", 9, Command::Connection(c)))
    }

    fn state() -> ClusterState {
        let mut s = crate::state::tests::bootstrapped();
        for (name, ext) in [("alice", Some(1)), ("bob", None)] {
            let out = s.apply(&Proposal::new(
                "user:admin",
                1,
                Command::User(UserCommand::Add {
                    name: name.into(),
                    role: UserRole::User,
                    quotas: Quotas {
                        external_ips: ext,
                        ..Default::default()
                    },
                }),
            ));
            assert_eq!(out, CommandOutcome::Done, "{out:?}");
        }
        s
    }

    fn create(
        owner: &str,
        name: &str,
        kind: ConnectionKind,
        internal_ip: Option<&str>,
        ports: Vec<u16>,
    ) -> ConnectionCommand {
        ConnectionCommand::Create {
            name: name.into(),
            owner: owner.into(),
            kind,
            internal_ip: internal_ip.map(|i| i.parse().unwrap()),
            external_ip: None,
            ports,
            active: true,
        }
    }

    fn refusal(out: CommandOutcome) -> (RefusalCode, String) {
        match out {
            CommandOutcome::Refused { code, message } => (code, message),
            other => panic!("not refused: {other:?}"),
        }
    }

    fn pool(s: &mut ClusterState, ranges: &[&str]) -> CommandOutcome {
        run(
            s,
            ConnectionCommand::SetNetwork {
                internal_cidr: None,
                external_pool: Some(
                    ranges
                        .iter()
                        .map(|r| Ipv4Range::parse(r).unwrap())
                        .collect(),
                ),
            },
        )
    }

    #[test]
    fn addresses_are_the_lowest_free_ones_and_never_shared() {
        let mut s = state();
        use ConnectionKind::*;
        assert_eq!(
            run(&mut s, create("alice", "a1", InternalIp, None, vec![])),
            CommandOutcome::Done
        );
        assert_eq!(
            run(&mut s, create("bob", "b1", Gateway, None, vec![])),
            CommandOutcome::Done
        );
        assert_eq!(s.connections["a1"].internal_ip, Ipv4Addr::new(10, 47, 0, 2));
        assert_eq!(s.connections["b1"].internal_ip, Ipv4Addr::new(10, 47, 0, 3));
        // A wanted address: free and usable only.
        let (code, m) = refusal(run(
            &mut s,
            create("bob", "b2", InternalIp, Some("10.47.0.2"), vec![]),
        ));
        assert_eq!(code, RefusalCode::AddressTaken);
        assert!(m.contains("taken by connection a1"), "{m}");
        let (_, m) = refusal(run(
            &mut s,
            create("bob", "b2", InternalIp, Some("10.47.0.1"), vec![]),
        ));
        assert!(m.contains("gateway 10.47.0.1"), "{m}");
        let (_, m) = refusal(run(
            &mut s,
            create("bob", "b2", InternalIp, Some("192.0.2.9"), vec![]),
        ));
        assert!(m.contains("not a usable address"), "{m}");
        assert_eq!(
            run(
                &mut s,
                create("bob", "b2", InternalIp, Some("10.47.9.9"), vec![])
            ),
            CommandOutcome::Done
        );
        // Freed addresses are used again.
        assert_eq!(
            run(&mut s, ConnectionCommand::Remove { name: "a1".into() }),
            CommandOutcome::Done
        );
        assert_eq!(
            run(&mut s, create("bob", "b3", InternalIp, None, vec![])),
            CommandOutcome::Done
        );
        assert_eq!(s.connections["b3"].internal_ip, Ipv4Addr::new(10, 47, 0, 2));
        let (code, _) = refusal(run(&mut s, create("bob", "b3", InternalIp, None, vec![])));
        assert_eq!(code, RefusalCode::NameTaken);
    }

    #[test]
    fn external_addresses_come_from_the_pool_within_the_quota() {
        let mut s = state();
        use ConnectionKind::*;
        let before = s.connections.clone();
        let (code, m) = refusal(run(
            &mut s,
            create("alice", "web", ExternalIp, None, vec![]),
        ));
        assert_eq!(code, RefusalCode::AddressTaken);
        assert!(m.contains("skiff network set"), "{m}");
        assert_eq!(s.connections, before, "a refusal changes nothing");

        assert_eq!(
            pool(&mut s, &["198.18.10.10-198.18.10.11"]),
            CommandOutcome::Done
        );
        assert_eq!(
            run(&mut s, create("alice", "web", ExternalIp, None, vec![])),
            CommandOutcome::Done
        );
        assert_eq!(
            s.connections["web"].external_ip,
            Some(Ipv4Addr::new(198, 18, 10, 10))
        );
        // Alice's quota is one external address.
        let (code, m) = refusal(run(
            &mut s,
            create("alice", "map", IpMapping, None, vec![22]),
        ));
        assert_eq!(code, RefusalCode::QuotaExceeded);
        assert!(m.contains("quota is 1"), "{m}");
        // A gateway takes none.
        assert_eq!(
            run(&mut s, create("alice", "out", Gateway, None, vec![])),
            CommandOutcome::Done
        );
        // Bob (no limit) takes the last one; then the pool is empty.
        assert_eq!(
            run(&mut s, create("bob", "map", IpMapping, None, vec![22, 443])),
            CommandOutcome::Done
        );
        assert_eq!(
            s.connections["map"].external_ip,
            Some(Ipv4Addr::new(198, 18, 10, 11))
        );
        let (_, m) = refusal(run(&mut s, create("bob", "map2", IpMapping, None, vec![])));
        assert!(m.contains("every external address"), "{m}");
        // The pool cannot shrink below what is in use; it may grow.
        let (code, m) = refusal(pool(&mut s, &["198.18.10.10"]));
        assert_eq!(code, RefusalCode::Conflict);
        assert!(m.contains("198.18.10.11"), "{m}");
        assert_eq!(
            pool(
                &mut s,
                &["198.18.10.10-198.18.10.11", "198.18.20.1-198.18.20.5"]
            ),
            CommandOutcome::Done
        );
        assert_eq!(s.network.external_total(), 7);
    }

    #[test]
    fn bad_values_are_refused() {
        let mut s = state();
        use ConnectionKind::*;
        for (c, want) in [
            (
                create("alice", "Bad_Name", InternalIp, None, vec![]),
                "invalid connection name",
            ),
            (
                create("alice", "p", InternalIp, None, vec![22]),
                "ip_mapping connections only",
            ),
            (create("alice", "p", IpMapping, None, vec![0]), "port 0"),
            (
                create("alice", "p", IpMapping, None, vec![22, 22]),
                "listed twice",
            ),
            (create("nobody", "p", InternalIp, None, vec![]), "no user"),
        ] {
            let (_, m) = refusal(run(&mut s, c));
            assert!(m.contains(want), "{m} should say {want}");
        }
        let set = |cidr: &str| ConnectionCommand::SetNetwork {
            internal_cidr: Some(cidr.into()),
            external_pool: None,
        };
        for (cidr, want) in [
            ("10.0.0.1/16", "host bits"),
            ("10.0.0.0/31", "prefix"),
            ("nonsense", "not an IPv4 network"),
        ] {
            let (_, m) = refusal(run(&mut s, set(cidr)));
            assert!(m.contains(want), "{m} should say {want}");
        }
        assert!(Ipv4Range::parse("10.0.0.9-10.0.0.1").is_err());
        assert!(Ipv4Range::parse("0.0.0.0").is_err());
        assert!(Ipv4Range::parse("10.0.0.0-10.2.0.0").is_err());
        let overlapping = ConnectionCommand::SetNetwork {
            internal_cidr: None,
            external_pool: Some(vec![
                Ipv4Range::parse("198.18.0.1-198.18.0.9").unwrap(),
                Ipv4Range::parse("198.18.0.9").unwrap(),
            ]),
        };
        let (_, m) = refusal(run(&mut s, overlapping));
        assert!(m.contains("overlap"), "{m}");
        // The internal network moves only if every connection fits in the new one.
        assert_eq!(
            run(&mut s, create("alice", "a", InternalIp, None, vec![])),
            CommandOutcome::Done
        );
        let (_, m) = refusal(run(&mut s, set("10.48.0.0/16")));
        assert!(m.contains("connection a uses 10.47.0.2"), "{m}");
        assert_eq!(run(&mut s, set("10.47.0.0/24")), CommandOutcome::Done);
        assert_eq!(s.network.internal_cidr, "10.47.0.0/24");
    }

    #[test]
    fn a_connection_serves_one_interface_of_its_owners_server() {
        let mut s = state();
        use ConnectionKind::*;
        assert_eq!(
            run(&mut s, create("alice", "net", InternalIp, None, vec![])),
            CommandOutcome::Done
        );
        assert_eq!(
            run(&mut s, create("bob", "bobnet", InternalIp, None, vec![])),
            CommandOutcome::Done
        );
        let server = |name: &str, owner: &str, nics: &[&str]| {
            let mut spec = ServerSpec::new(64, 1);
            spec.nics = nics
                .iter()
                .map(|c| NicSpec {
                    connection: Some(c.to_string()),
                })
                .collect();
            Command::Server(ServerCommand::Create {
                name: name.into(),
                owner: owner.into(),
                spec,
                node: "a".into(),
                start: false,
            })
        };
        let go = |s: &mut ClusterState, c| s.apply(&Proposal::new("user:admin", 9, c));
        let (_, m) = refusal(go(&mut s, server("s1", "alice", &["bobnet"])));
        assert!(m.contains("no connection named \"bobnet\" of alice"), "{m}");
        let (_, m) = refusal(go(&mut s, server("s1", "alice", &["net", "net"])));
        assert!(m.contains("two interfaces"), "{m}");
        assert!(matches!(
            go(&mut s, server("s1", "alice", &["net"])),
            CommandOutcome::TaskStarted { .. }
        ));
        let (_, m) = refusal(go(&mut s, server("s2", "alice", &["net"])));
        assert!(m.contains("in use by server s1"), "{m}");
        assert!(!s.servers.contains_key("s2"));
        // In use: not removed; deactivating and activating work.
        let (code, m) = refusal(run(
            &mut s,
            ConnectionCommand::Remove { name: "net".into() },
        ));
        assert_eq!(code, RefusalCode::Conflict);
        assert!(m.contains("in use by server s1"), "{m}");
        assert_eq!(
            run(&mut s, ConnectionCommand::Deactivate { name: "net".into() }),
            CommandOutcome::Done
        );
        assert!(!s.connections["net"].active);
        assert_eq!(
            run(&mut s, ConnectionCommand::Activate { name: "net".into() }),
            CommandOutcome::Done
        );
        assert!(s.connections["net"].active);
        let (code, _) = refusal(run(
            &mut s,
            ConnectionCommand::Activate {
                name: "nope".into(),
            },
        ));
        assert_eq!(code, RefusalCode::NotFound);
    }
}
