//! The scheduler: chooses the compute node a server goes to, from the figures nodes gossip and
//! what the desired state already placed on them. A pure function ([`place`]); the leader runs it
//! before proposing, and puts its choice into the command.
//!
//! Capacity of a node:
//! - memory: `memory_total - policy.memory_reserve_mib - (memory of the servers placed there)`;
//!   the gossiped `memory_used` is not subtracted, since the running servers in it are already
//!   counted as placed (the reserve keeps room for the host itself, as in Origo OS);
//! - vCPUs: `cores * policy.vcpus_per_core - (vCPUs of the servers placed there)`;
//! - storage: per pool, `total - used` as gossiped (disks are thin, so what they take is in `used`).
//!
//! Only alive, compute-enabled members that are not in maintenance are candidates; a server locked
//! to a node only ever goes there. Among the nodes that fit, the one with the most free memory
//! wins, then the smallest name. When none fits, [`NoPlacement`] says why, node by node.

use std::collections::BTreeMap;
use std::fmt;

use skiff_cluster::api::PoolUsage;
use skiff_cluster::gossip::{keys, GossipNode};
use skiff_cluster::state::{ClusterState, ServerSpec};

/// Gossip key a node publishes as `false` when it does not run servers (`[compute] enabled`);
/// absent (an older agent) means compute-enabled.
pub const COMPUTE_KEY: &str = keys::COMPUTE;

/// Pool a disk without an explicit pool goes to.
pub const DEFAULT_POOL: &str = "local";

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Overcommit rules: the leader's `[scheduler]` section of `node.toml` (the defaults are Origo
/// OS's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerPolicy {
    /// vCPUs a node offers per physical core.
    pub vcpus_per_core: u32,
    /// Memory (MiB) always kept free on a node for the host.
    pub memory_reserve_mib: u64,
}

impl Default for SchedulerPolicy {
    fn default() -> Self {
        SchedulerPolicy {
            vcpus_per_core: 2,
            memory_reserve_mib: 512,
        }
    }
}

impl From<&skiff_cluster::config::SchedulerSettings> for SchedulerPolicy {
    fn from(s: &skiff_cluster::config::SchedulerSettings) -> Self {
        SchedulerPolicy {
            vcpus_per_core: s.vcpus_per_core,
            memory_reserve_mib: s.memory_reserve_mib,
        }
    }
}

/// One node as the scheduler sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub alive: bool,
    pub compute: bool,
    pub maintenance: bool,
    pub cores: u32,
    pub memory_total_mib: u64,
    pub pools: Vec<PoolUsage>,
    /// Memory (MiB) of the servers the desired state placed on the node.
    pub placed_memory_mib: u64,
    /// vCPUs of the servers the desired state placed on the node.
    pub placed_vcpus: u64,
}

/// What a server needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Demand {
    pub memory_mib: u64,
    pub vcpus: u64,
    /// GiB per pool.
    pub storage_gib: BTreeMap<String, u64>,
    /// Only this node may take it.
    pub lock_to_node: Option<String>,
    /// Never this node (the one a server moves away from).
    pub exclude: Option<String>,
}

impl Demand {
    /// What `spec` needs; its disks are summed per pool.
    pub fn of(spec: &ServerSpec) -> Self {
        let mut storage_gib = BTreeMap::new();
        for d in &spec.disks {
            *storage_gib
                .entry(d.pool.clone().unwrap_or_else(|| DEFAULT_POOL.into()))
                .or_insert(0) += d.size_gib;
        }
        Demand {
            memory_mib: spec.memory_mib,
            vcpus: spec.vcpus as u64,
            storage_gib,
            lock_to_node: spec.lock_to_node.clone(),
            exclude: None,
        }
    }
}

/// No node can take the server; one reason per node considered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoPlacement {
    /// `(node, why)`, by node name.
    pub reasons: Vec<(String, String)>,
}

impl fmt::Display for NoPlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reasons.is_empty() {
            return write!(f, "no node can take the server: the cluster has no nodes");
        }
        write!(f, "no node can take the server: ")?;
        for (i, (node, why)) in self.reasons.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{node}: {why}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NoPlacement {}

/// Free memory (MiB) of a node under `policy`, negative when overcommitted.
fn free_memory(c: &Candidate, policy: &SchedulerPolicy) -> i64 {
    c.memory_total_mib as i64 - policy.memory_reserve_mib as i64 - c.placed_memory_mib as i64
}

/// Why `c` cannot take `d`, or `None` when it can.
fn refusal(c: &Candidate, d: &Demand, policy: &SchedulerPolicy) -> Option<String> {
    if d.exclude.as_deref() == Some(c.name.as_str()) {
        return Some("the server is already there".into());
    }
    if !c.alive {
        return Some("not alive".into());
    }
    if !c.compute {
        return Some("compute disabled".into());
    }
    if c.maintenance {
        return Some("in maintenance".into());
    }
    if c.memory_total_mib == 0 || c.cores == 0 {
        return Some("has not reported its figures yet".into());
    }
    let mem = free_memory(c, policy).max(0) as u64;
    if mem < d.memory_mib {
        return Some(format!(
            "{mem} MiB memory free, {} needed (of {} MiB, {} kept free, {} placed)",
            d.memory_mib, c.memory_total_mib, policy.memory_reserve_mib, c.placed_memory_mib
        ));
    }
    let cpu_cap = c.cores as u64 * policy.vcpus_per_core as u64;
    let cpu = cpu_cap.saturating_sub(c.placed_vcpus);
    if cpu < d.vcpus {
        return Some(format!(
            "{cpu} vCPUs free, {} needed (of {cpu_cap}: {} cores x {}, {} placed)",
            d.vcpus, c.cores, policy.vcpus_per_core, c.placed_vcpus
        ));
    }
    for (pool, gib) in &d.storage_gib {
        let Some(p) = c.pools.iter().find(|p| &p.name == pool) else {
            return Some(format!("no storage pool {pool:?}"));
        };
        let free = p.total.saturating_sub(p.used) / GIB;
        if free < *gib {
            return Some(format!("pool {pool}: {free} GiB free, {gib} needed"));
        }
    }
    None
}

/// Chooses the node for `demand` among `candidates` (pure: same input, same answer).
pub fn place(
    candidates: &[Candidate],
    demand: &Demand,
    policy: &SchedulerPolicy,
) -> Result<String, NoPlacement> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut reasons = Vec::new();
    let mut best: Option<&Candidate> = None;
    if let Some(lock) = &demand.lock_to_node {
        if !sorted.iter().any(|c| &c.name == lock) {
            reasons.push((
                lock.clone(),
                "not a member (the server is locked to it)".into(),
            ));
        }
    }
    for c in sorted {
        if let Some(lock) = &demand.lock_to_node {
            if &c.name != lock {
                continue;
            }
        }
        match refusal(c, demand, policy) {
            Some(why) => reasons.push((c.name.clone(), why)),
            None => {
                // Most free memory first; on equal memory the earlier (smaller) name stays.
                if best.is_none_or(|b| free_memory(c, policy) > free_memory(b, policy)) {
                    best = Some(c);
                }
            }
        }
    }
    match best {
        Some(c) => Ok(c.name.clone()),
        None => Err(NoPlacement { reasons }),
    }
}

/// The candidates of the cluster: every member, with its gossiped figures and what the desired
/// state placed on it. `skip_server`: leave this server out of the placed sums (when moving it).
pub fn candidates(
    state: &ClusterState,
    gossip: &[GossipNode],
    skip_server: Option<&str>,
) -> Vec<Candidate> {
    state
        .nodes
        .values()
        .map(|rec| {
            let g = gossip.iter().find(|g| g.name == rec.name);
            let (mut mem, mut cpus) = (0, 0);
            for s in state.servers.values().filter(|s| {
                s.node.as_deref() == Some(rec.name.as_str()) && Some(s.name.as_str()) != skip_server
            }) {
                mem += s.spec.memory_mib;
                cpus += s.spec.vcpus as u64;
            }
            Candidate {
                name: rec.name.clone(),
                alive: g.is_some_and(|g| g.alive),
                compute: g.and_then(|g| g.get(COMPUTE_KEY)) != Some("false"),
                maintenance: state.maintenance.contains(&rec.name),
                cores: g.map(|g| g.get_u64(keys::CORES) as u32).unwrap_or(0),
                memory_total_mib: g.map(|g| g.get_u64(keys::MEMORY_TOTAL) / MIB).unwrap_or(0),
                pools: g
                    .and_then(|g| g.get(keys::STORAGE))
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_default(),
                placed_memory_mib: mem,
                placed_vcpus: cpus,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cores: u32, mem_mib: u64, disk_gib: u64) -> Candidate {
        Candidate {
            name: name.into(),
            alive: true,
            compute: true,
            maintenance: false,
            cores,
            memory_total_mib: mem_mib,
            pools: vec![PoolUsage {
                name: "local".into(),
                total: disk_gib * GIB,
                used: 0,
            }],
            placed_memory_mib: 0,
            placed_vcpus: 0,
        }
    }

    fn demand(mem: u64, cpus: u64, disk: u64) -> Demand {
        let mut d = Demand {
            memory_mib: mem,
            vcpus: cpus,
            ..Default::default()
        };
        if disk > 0 {
            d.storage_gib.insert("local".into(), disk);
        }
        d
    }

    fn with(mut c: Candidate, f: impl FnOnce(&mut Candidate)) -> Candidate {
        f(&mut c);
        c
    }

    #[test]
    fn placement_table() {
        let p = SchedulerPolicy::default();
        let locked = |n: &str| Demand {
            lock_to_node: Some(n.into()),
            ..demand(512, 1, 0)
        };
        let excluded = |n: &str| Demand {
            exclude: Some(n.into()),
            ..demand(512, 1, 0)
        };
        type Case = (
            &'static str,
            Vec<Candidate>,
            Demand,
            Result<&'static str, &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "most free memory wins",
                vec![node("n1", 4, 2048, 100), node("n2", 4, 4096, 100)],
                demand(512, 1, 10),
                Ok("n2"),
            ),
            (
                "equal memory: smallest name",
                vec![node("n2", 4, 4096, 100), node("n1", 4, 4096, 100)],
                demand(512, 1, 10),
                Ok("n1"),
            ),
            (
                "placed servers count",
                vec![
                    with(node("n1", 4, 4096, 100), |c| c.placed_memory_mib = 3000),
                    node("n2", 4, 2048, 100),
                ],
                demand(512, 1, 0),
                Ok("n2"),
            ),
            (
                "the reserve is kept free",
                vec![node("n1", 4, 1024, 100)],
                demand(513, 1, 0),
                Err("n1: 512 MiB memory free, 513 needed (of 1024 MiB, 512 kept free, 0 placed)"),
            ),
            (
                "exactly fits",
                vec![node("n1", 4, 1024, 100)],
                demand(512, 8, 100),
                Ok("n1"),
            ),
            (
                "two vCPUs per core",
                vec![with(node("n1", 2, 8192, 100), |c| c.placed_vcpus = 3)],
                demand(512, 2, 0),
                Err("n1: 1 vCPUs free, 2 needed (of 4: 2 cores x 2, 3 placed)"),
            ),
            (
                "storage per pool",
                vec![
                    with(node("n1", 4, 8192, 100), |c| c.pools[0].used = 95 * GIB),
                    with(node("n2", 4, 4096, 100), |c| c.pools[0].name = "fast".into()),
                ],
                demand(512, 1, 10),
                Err("n1: pool local: 5 GiB free, 10 needed; n2: no storage pool \"local\""),
            ),
            (
                "every reason, per node",
                vec![
                    with(node("n1", 4, 8192, 100), |c| c.alive = false),
                    with(node("n2", 4, 8192, 100), |c| c.maintenance = true),
                    with(node("n3", 4, 8192, 100), |c| c.compute = false),
                    node("n4", 0, 0, 0),
                    with(node("n5", 4, 1024, 100), |c| c.placed_memory_mib = 2048),
                ],
                demand(512, 1, 0),
                Err("n1: not alive; n2: in maintenance; n3: compute disabled; n4: has not reported its figures yet; n5: 0 MiB memory free, 512 needed (of 1024 MiB, 512 kept free, 2048 placed)"),
            ),
            (
                "lock to node beats free memory",
                vec![node("n1", 4, 2048, 100), node("n2", 4, 8192, 100)],
                locked("n1"),
                Ok("n1"),
            ),
            (
                "locked node in maintenance: only its reason",
                vec![
                    with(node("n1", 4, 2048, 100), |c| c.maintenance = true),
                    node("n2", 4, 8192, 100),
                ],
                locked("n1"),
                Err("n1: in maintenance"),
            ),
            (
                "locked to a stranger",
                vec![node("n1", 4, 2048, 100)],
                locked("n9"),
                Err("n9: not a member (the server is locked to it)"),
            ),
            (
                "a move never stays put",
                vec![node("n1", 4, 8192, 100), node("n2", 4, 2048, 100)],
                excluded("n1"),
                Ok("n2"),
            ),
            (
                "no nodes",
                vec![],
                demand(512, 1, 0),
                Err(""),
            ),
        ];
        for (what, nodes, d, want) in cases {
            let got = place(&nodes, &d, &p);
            match want {
                Ok(n) => assert_eq!(got, Ok(n.to_string()), "{what}"),
                Err(msg) => {
                    let e = got.expect_err(what);
                    let text: Vec<String> =
                        e.reasons.iter().map(|(n, w)| format!("{n}: {w}")).collect();
                    assert_eq!(text.join("; "), msg, "{what}");
                    assert!(e.to_string().starts_with("no node can take the server"));
                }
            }
        }
    }

    #[test]
    fn policy_is_configurable() {
        let nodes = vec![node("n1", 2, 2048, 100)];
        let strict = SchedulerPolicy {
            vcpus_per_core: 1,
            memory_reserve_mib: 1024,
        };
        assert!(place(&nodes, &demand(1024, 2, 0), &strict).is_ok());
        assert!(place(&nodes, &demand(1025, 1, 0), &strict).is_err());
        assert!(place(&nodes, &demand(512, 3, 0), &strict).is_err());
        assert!(place(&nodes, &demand(512, 4, 0), &SchedulerPolicy::default()).is_ok());
    }

    #[test]
    fn demand_sums_disks_per_pool() {
        use skiff_cluster::state::servers::DiskSpec;
        let disk = |gib, pool: Option<&str>| DiskSpec {
            image: None,
            size_gib: gib,
            pool: pool.map(String::from),
        };
        let spec = ServerSpec {
            memory_mib: 256,
            vcpus: 2,
            disks: vec![disk(5, None), disk(3, Some("local")), disk(7, Some("nfs0"))],
            nics: vec![],
            boot_order: vec![],
            autostart: false,
            lock_to_node: Some("n2".into()),
            ha: false,
            iso: None,
        };
        let d = Demand::of(&spec);
        assert_eq!(d.storage_gib["local"], 8);
        assert_eq!(d.storage_gib["nfs0"], 7);
        assert_eq!((d.memory_mib, d.vcpus), (256, 2));
        assert_eq!(d.lock_to_node.as_deref(), Some("n2"));
    }

    #[test]
    fn candidates_join_state_and_gossip() {
        use skiff_cluster::state::servers::{PowerState, ServerRecord};
        use skiff_cluster::state::{NodeRecord, NodeRole};
        let mut state = ClusterState::default();
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            state.nodes.insert(
                n.to_string(),
                NodeRecord {
                    id: i as u64 + 1,
                    name: n.to_string(),
                    addr: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                    role: NodeRole::Compute,
                    cert_serial: String::new(),
                    joined_at: 0,
                },
            );
        }
        state.maintenance.insert("c".into());
        for (name, node, mem) in [("s1", "a", 1000), ("s2", "a", 24), ("s3", "b", 7)] {
            state.servers.insert(
                name.into(),
                ServerRecord {
                    name: name.into(),
                    owner: "u".into(),
                    spec: ServerSpec {
                        memory_mib: mem,
                        vcpus: 1,
                        disks: vec![],
                        nics: vec![],
                        boot_order: vec![],
                        autostart: false,
                        lock_to_node: None,
                        ha: false,
                        iso: None,
                    },
                    node: Some(node.into()),
                    desired: PowerState::Running,
                    created_at: 0,
                    generation: 1,
                },
            );
        }
        let g = |name: &str, alive: bool, extra: &[(&str, &str)]| GossipNode {
            name: name.into(),
            generation: 1,
            addr: "127.0.0.1:1".parse().unwrap(),
            alive,
            values: [
                (keys::CORES, "4"),
                (keys::MEMORY_TOTAL, "8589934592"),
                (keys::STORAGE, r#"[{"name":"local","total":100,"used":1}]"#),
            ]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        let gossip = vec![g("a", true, &[]), g("b", true, &[(COMPUTE_KEY, "false")])];
        let c = candidates(&state, &gossip, Some("s2"));
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].placed_memory_mib, c[0].placed_vcpus), (1000, 1));
        assert_eq!((c[0].cores, c[0].memory_total_mib), (4, 8192));
        assert_eq!(c[0].pools[0].used, 1);
        assert!(c[0].alive && c[0].compute && !c[0].maintenance);
        assert!(!c[1].compute);
        assert!(!c[2].alive && c[2].maintenance, "no gossip: not alive");
    }
}
