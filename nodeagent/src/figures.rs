//! This machine's capacity and use: cores, CPU in use, memory, and storage per pool, as gossiped.

use serde::{Deserialize, Serialize};

/// Use of one storage pool.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PoolFigures {
    pub name: String,
    pub total: u64,
    pub used: u64,
}

/// A node's figures at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFigures {
    pub cores: u32,
    pub memory_total: u64,
    pub memory_used: u64,
    pub storage: Vec<PoolFigures>,
}

/// Reads `MemTotal` and `MemAvailable` (bytes) from a `/proc/meminfo` text.
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// CPU times of the whole machine from the first line of `/proc/stat` (clock ticks): `(busy,
/// total)`, where busy leaves out idle and iowait.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 5 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields[4];
    Some((total.saturating_sub(idle), total))
}

/// CPU in use between two `/proc/stat` samples, in thousandths of a core.
pub fn cpu_milli(prev: (u64, u64), cur: (u64, u64), cores: u32) -> u64 {
    let total = cur.1.saturating_sub(prev.1);
    if total == 0 {
        return 0;
    }
    let busy = cur.0.saturating_sub(prev.0).min(total);
    busy * 1000 * u64::from(cores) / total
}

/// The machine's CPU times now (see [`parse_proc_stat`]).
pub fn cpu_times() -> Option<(u64, u64)> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Measures the machine and the use of its usable pools.
pub fn measure(pools: &crate::storage::pools::Pools) -> NodeFigures {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let (memory_total, available) = std::fs::read_to_string("/proc/meminfo")
        .map(|t| parse_meminfo(&t))
        .unwrap_or((0, 0));
    NodeFigures {
        cores,
        memory_total,
        memory_used: memory_total.saturating_sub(available),
        storage: pool_figures(pools),
    }
}

/// The use of the node's usable pools, as gossiped (`local` first).
pub fn pool_figures(pools: &crate::storage::pools::Pools) -> Vec<PoolFigures> {
    pools
        .report()
        .into_iter()
        .filter(|p| p.error.is_none())
        .map(|p| PoolFigures {
            name: p.name,
            total: p.total,
            used: p.used,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_use_comes_from_two_samples_of_proc_stat() {
        let a = parse_proc_stat("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4 5\n").unwrap();
        assert_eq!(a, (200, 1000));
        let b = parse_proc_stat("cpu  400 0 100 800 100 0 0 0 0 0\n").unwrap();
        // 300 busy ticks out of 400 on 2 cores: 1.5 cores.
        assert_eq!(cpu_milli(a, b, 2), 1500);
        assert_eq!(cpu_milli(a, a, 2), 0);
        assert_eq!(parse_proc_stat("garbage"), None);
        assert_eq!(parse_proc_stat("cpu  1 x 3"), None);
    }

    #[test]
    fn meminfo_parses() {
        let t = "MemTotal:       24000 kB\nMemFree: 1 kB\nMemAvailable:   20000 kB\n";
        assert_eq!(parse_meminfo(t), (24000 * 1024, 20000 * 1024));
        assert_eq!(parse_meminfo("garbage"), (0, 0));
    }

    #[test]
    fn measures_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let f = measure(&crate::storage::pools::Pools::open(dir.path()));
        assert!(f.cores >= 1);
        assert!(f.memory_total > 0);
        assert_eq!(f.storage.len(), 1);
    }
}
