//! This machine's capacity and use: cores, memory, and storage per pool, as gossiped.

use std::path::Path;

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

/// Measures the machine; the data dir's file system is the local storage pool.
pub fn measure(data_dir: &Path) -> NodeFigures {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let (memory_total, available) = std::fs::read_to_string("/proc/meminfo")
        .map(|t| parse_meminfo(&t))
        .unwrap_or((0, 0));
    let mut storage = Vec::new();
    if let Ok(st) = nix::sys::statvfs::statvfs(data_dir) {
        let frag = st.fragment_size();
        let total = st.blocks() * frag;
        let free = st.blocks_available() * frag;
        storage.push(PoolFigures {
            name: "local".into(),
            total,
            used: total.saturating_sub(free),
        });
    }
    NodeFigures {
        cores,
        memory_total,
        memory_used: memory_total.saturating_sub(available),
        storage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_parses() {
        let t = "MemTotal:       24000 kB\nMemFree: 1 kB\nMemAvailable:   20000 kB\n";
        assert_eq!(parse_meminfo(t), (24000 * 1024, 20000 * 1024));
        assert_eq!(parse_meminfo("garbage"), (0, 0));
    }

    #[test]
    fn measures_this_machine() {
        let f = measure(Path::new("/"));
        assert!(f.cores >= 1);
        assert!(f.memory_total > 0);
        assert_eq!(f.storage.len(), 1);
    }
}
