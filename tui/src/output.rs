//! Rendering of API answers for the command line: aligned tables for people, JSON for scripts,
//! and the small formatters (bytes, times) the cockpit shares.

use skiff_cluster::api::{ClusterView, NodeView, ROLE_ADMIN_ELIGIBLE, ROLE_COMPUTE};

/// Columns of `skiff node list`.
pub const NODE_COLUMNS: [&str; 11] = [
    "NAME", "ADDRESS", "ROLE", "VOTER", "ALIVE", "LEADER", "TERM", "CPU", "MEM", "SERVERS",
    "VERSION",
];

/// `skiff node list` as a table, sorted by name, every line ending in `\n`.
pub fn nodes_table(nodes: &[NodeView]) -> String {
    let mut sorted: Vec<&NodeView> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.address.clone(),
                n.role.clone(),
                yes_no(n.voter).into(),
                yes_no(n.alive).into(),
                if n.leader { "*".into() } else { String::new() },
                n.term.to_string(),
                n.cores.to_string(),
                memory_pair(n.memory_used, n.memory_total),
                n.servers.to_string(),
                n.version.clone(),
            ]
        })
        .collect();
    table(&NODE_COLUMNS, &rows)
}

/// `skiff node list -o json`: exactly the API's array of nodes, pretty-printed, with a final newline.
pub fn nodes_json(nodes: &[NodeView]) -> String {
    json(nodes)
}

/// `skiff cluster` for people.
pub fn cluster_text(view: &ClusterView) -> String {
    let list = |names: &[String]| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    let rows = vec![
        vec!["CLUSTER".to_owned(), view.cluster_id.clone()],
        vec![
            "LEADER".to_owned(),
            view.leader.clone().unwrap_or_else(|| "(none)".to_owned()),
        ],
        vec!["TERM".to_owned(), view.term.to_string()],
        vec![
            "VOTERS".to_owned(),
            format!("{} ({})", list(&view.voters), view.voters.len()),
        ],
        vec![
            "LEARNERS".to_owned(),
            format!("{} ({})", list(&view.learners), view.learners.len()),
        ],
    ];
    align(&rows)
}

/// `skiff cluster -o json`.
pub fn cluster_json(view: &ClusterView) -> String {
    json(view)
}

/// Pretty JSON with a final newline.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Serializing plain data types to a string cannot fail.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// A header row and data rows as left-aligned columns two spaces apart, no trailing blanks.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut all: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    all.push(header.iter().map(|h| (*h).to_owned()).collect());
    all.extend(rows.iter().cloned());
    align(&all)
}

fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Short role name for narrow places: `admin` or `compute`.
pub fn short_role(role: &str) -> &str {
    match role {
        ROLE_ADMIN_ELIGIBLE => "admin",
        ROLE_COMPUTE => "compute",
        other => other,
    }
}

/// `used/total UNIT` with both in the unit of the total: `2.0/8.0 GiB`.
pub fn memory_pair(used: u64, total: u64) -> String {
    if total == 0 && used == 0 {
        return "-".to_owned();
    }
    let (div, unit) = unit_for(total.max(used));
    format!(
        "{}/{} {unit}",
        scaled(used, div, unit),
        scaled(total, div, unit)
    )
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `8.0 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    let (div, unit) = unit_for(bytes);
    format!("{} {unit}", scaled(bytes, div, unit))
}

fn unit_for(bytes: u64) -> (u64, &'static str) {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut div = 1u64;
    let mut i = 0;
    while i + 1 < UNITS.len() && bytes / div >= 1024 {
        div *= 1024;
        i += 1;
    }
    (div, UNITS[i])
}

fn scaled(bytes: u64, div: u64, unit: &str) -> String {
    if unit == "B" {
        bytes.to_string()
    } else {
        format!("{:.1}", bytes as f64 / div as f64)
    }
}

/// Percentage of `used` in `total`, rounded, at most 100, 0 when the total is unknown.
pub fn percent(used: u64, total: u64) -> u64 {
    if total == 0 {
        0
    } else {
        ((used as u128 * 100 + total as u128 / 2) / total as u128).min(100) as u64
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_unix_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = skiff_cluster::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A number of seconds as `1h30m`, `45s`, `2d3h` (the two largest units).
pub fn format_duration(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut left = secs;
    let mut parts = 0;
    for (size, name) in UNITS {
        if left >= size && parts < 2 {
            out.push_str(&format!("{}{name}", left / size));
            left %= size;
            parts += 1;
        } else if parts > 0 {
            // Only adjacent units: 1d5s reads as 1d.
            parts = 2;
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use skiff_cluster::api::PoolUsage;

    const GIB: u64 = 1 << 30;

    pub(crate) fn sample_node(name: &str, n: u64) -> NodeView {
        NodeView {
            name: name.into(),
            id: 100 + n,
            address: format!("10.0.0.{n}:7000"),
            role: if n <= 3 {
                ROLE_ADMIN_ELIGIBLE.into()
            } else {
                ROLE_COMPUTE.into()
            },
            voter: n <= 3,
            alive: true,
            leader: n == 1,
            term: 7,
            generation: 1_700_000_000 + n,
            version: "0.1.0".into(),
            cores: 8 * n as u32,
            memory_total: 16 * GIB * n,
            // 20% on node 1, 80% on node 2 (sample_nodes marks node 3 down with nothing used).
            memory_used: 16 * GIB * n * (20 + 60 * (n - 1)) / 100,
            cpu_milli: 0,
            storage: vec![PoolUsage {
                name: "local".into(),
                total: 500 * GIB,
                used: 120 * GIB,
            }],
            servers: 2 * n as u32,
        }
    }

    pub(crate) fn sample_nodes() -> Vec<NodeView> {
        let mut nodes = vec![
            sample_node("node-3", 3),
            sample_node("node-1", 1),
            sample_node("node-2", 2),
        ];
        nodes[0].alive = false;
        nodes[0].memory_used = 0;
        nodes
    }

    #[test]
    fn node_table_is_aligned_and_sorted() {
        assert_eq!(
            nodes_table(&sample_nodes()),
            "\
NAME    ADDRESS        ROLE            VOTER  ALIVE  LEADER  TERM  CPU  MEM            SERVERS  VERSION
node-1  10.0.0.1:7000  admin-eligible  yes    yes    *       7     8    3.2/16.0 GiB   2        0.1.0
node-2  10.0.0.2:7000  admin-eligible  yes    yes            7     16   25.6/32.0 GiB  4        0.1.0
node-3  10.0.0.3:7000  admin-eligible  yes    no             7     24   0.0/48.0 GiB   6        0.1.0
"
        );
    }

    #[test]
    fn empty_node_table_has_the_header() {
        assert_eq!(
            nodes_table(&[]),
            "NAME  ADDRESS  ROLE  VOTER  ALIVE  LEADER  TERM  CPU  MEM  SERVERS  VERSION\n"
        );
    }

    #[test]
    fn node_json_is_the_api_array() {
        let nodes = sample_nodes();
        let text = nodes_json(&nodes);
        assert!(text.ends_with("]\n"));
        let back: Vec<NodeView> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, nodes, "order and content as the API gave them");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value[0]["memory_total"], 48 * GIB);
        assert_eq!(value[1]["storage"][0]["name"], "local");
        assert_eq!(nodes_json(&[]), "[]\n");
    }

    #[test]
    fn cluster_text_and_json() {
        let view = ClusterView {
            cluster_id: "c-42".into(),
            leader: Some("node-1".into()),
            term: 7,
            voters: vec!["node-1".into(), "node-2".into(), "node-3".into()],
            learners: vec![],
        };
        assert_eq!(
            cluster_text(&view),
            "\
CLUSTER   c-42
LEADER    node-1
TERM      7
VOTERS    node-1, node-2, node-3 (3)
LEARNERS  - (0)
"
        );
        let back: ClusterView = serde_json::from_str(&cluster_json(&view)).unwrap();
        assert_eq!(back, view);
        let leaderless = ClusterView {
            leader: None,
            ..view
        };
        assert!(cluster_text(&leaderless).contains("LEADER    (none)\n"));
    }

    #[test]
    fn bytes_and_times() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(8 * GIB), "8.0 GiB");
        assert_eq!(memory_pair(GIB / 2, 2 * GIB), "0.5/2.0 GiB");
        assert_eq!(memory_pair(0, 0), "-");
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(2, 3), 67);
        assert_eq!(percent(7, 3), 100);
        assert_eq!(percent(5, 0), 0);
        assert_eq!(format_unix_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_unix_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(format_duration(3600), "1h");
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(86_405), "1d");
        assert_eq!(short_role(ROLE_ADMIN_ELIGIBLE), "admin");
    }
}
