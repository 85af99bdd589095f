//! Live figures of the servers on this node: the hypervisor's cumulative counters
//! ([`super::DomainStats`]) sampled every [`super::SERVERS_FIGURE_INTERVAL`] and turned into rates.
//! The latest figures go into the agent's reports (the leader shows them in `/api/v1/actual` and
//! streams them to the cockpit); their sums are gossiped as the node's summary.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use skiff_cluster::agentproto::ServerFigures;

use super::DomainStats;

/// Gossip key: CPU of all servers on the node, in thousandths of a core.
pub const GOSSIP_SERVERS_CPU: &str = "servers_cpu_milli";
/// Gossip key: memory of all running servers on the node, MiB.
pub const GOSSIP_SERVERS_MEMORY: &str = "servers_memory_mib";

/// Remembers the previous sample of each domain and the latest figures.
#[derive(Default)]
pub struct Sampler {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    previous: HashMap<String, (Instant, DomainStats)>,
    latest: Vec<ServerFigures>,
}

impl Sampler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a new sample (taken at `at`); returns the figures it gives.
    pub fn sample(&self, at: Instant, stats: Vec<DomainStats>) -> Vec<ServerFigures> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut figures = Vec::with_capacity(stats.len());
        let mut next = HashMap::with_capacity(stats.len());
        for s in stats {
            let f = match inner.previous.get(&s.name) {
                Some((t, prev)) => rates(prev, &s, at.saturating_duration_since(*t)),
                None => ServerFigures {
                    name: s.name.clone(),
                    memory_mib: s.memory_kib / 1024,
                    ..Default::default()
                },
            };
            figures.push(f);
            next.insert(s.name.clone(), (at, s));
        }
        figures.sort_by(|a, b| a.name.cmp(&b.name));
        inner.previous = next;
        inner.latest = figures.clone();
        figures
    }

    /// The figures of the last sample.
    pub fn latest(&self) -> Vec<ServerFigures> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .latest
            .clone()
    }
}

/// Rates between two samples of one domain `dt` apart. Counters that went down (the domain
/// restarted) count from zero.
pub fn rates(prev: &DomainStats, cur: &DomainStats, dt: Duration) -> ServerFigures {
    let secs = dt.as_secs_f64();
    let per_sec = |a: u64, b: u64| -> u64 {
        if secs <= 0.0 {
            return 0;
        }
        let delta = if b >= a { b - a } else { b };
        (delta as f64 / secs) as u64
    };
    ServerFigures {
        name: cur.name.clone(),
        // ns of CPU per s of wall time = thousandths of a core × 10^6.
        cpu_milli: per_sec(prev.cpu_time_ns, cur.cpu_time_ns) / 1_000_000,
        memory_mib: cur.memory_kib / 1024,
        disk_read_bps: per_sec(prev.disk_read_bytes, cur.disk_read_bytes),
        disk_write_bps: per_sec(prev.disk_write_bytes, cur.disk_write_bytes),
        net_rx_bps: per_sec(prev.net_rx_bytes, cur.net_rx_bytes),
        net_tx_bps: per_sec(prev.net_tx_bytes, cur.net_tx_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(name: &str, cpu_s: u64, read: u64) -> DomainStats {
        DomainStats {
            name: name.into(),
            cpu_time_ns: cpu_s * 1_000_000_000,
            memory_kib: 512 * 1024,
            disk_read_bytes: read,
            ..Default::default()
        }
    }

    #[test]
    fn rates_are_per_second_and_survive_restarts() {
        let f = rates(
            &stats("a", 10, 1000),
            &stats("a", 13, 5000),
            Duration::from_secs(2),
        );
        assert_eq!(f.cpu_milli, 1500, "3 s of CPU in 2 s: 1.5 cores");
        assert_eq!((f.disk_read_bps, f.memory_mib), (2000, 512));
        // The domain restarted: counters start again from zero.
        let f = rates(
            &stats("a", 13, 5000),
            &stats("a", 1, 100),
            Duration::from_secs(1),
        );
        assert_eq!((f.cpu_milli, f.disk_read_bps), (1000, 100));
        assert_eq!(
            rates(&stats("a", 1, 0), &stats("a", 2, 0), Duration::ZERO).cpu_milli,
            0
        );
    }

    #[test]
    fn the_sampler_needs_two_samples_for_rates() {
        let s = Sampler::new();
        let t0 = Instant::now();
        let first = s.sample(t0, vec![stats("b", 1, 0), stats("a", 1, 0)]);
        assert_eq!(
            first.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(first.iter().all(|f| f.cpu_milli == 0));
        let second = s.sample(t0 + Duration::from_secs(1), vec![stats("a", 2, 0)]);
        assert_eq!(second.len(), 1, "b stopped: no figures");
        assert_eq!(second[0].cpu_milli, 1000);
        assert_eq!(s.latest(), second);
    }
}
