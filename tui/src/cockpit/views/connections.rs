//! The connections view (`GET /api/v1/connections`): how servers' interfaces reach the world,
//! with their addresses, and the address plan (`GET /api/v1/network`) for describe.

use ratatui::layout::Constraint;
use ratatui::text::Line;
use skiff_cluster::api::connections::{ConnectionView, NetworkView};
use skiff_cluster::state::ConnectionKind;

use super::{Column, SortKey};
use crate::cockpit::theme::Theme;

/// The columns, in order.
pub const COLUMNS: &[Column] = &[
    Column {
        title: "NAME",
        width: Constraint::Min(8),
    },
    Column {
        title: "KIND",
        width: Constraint::Length(11),
    },
    // Addresses keep their width on narrow terminals (a cut address would read as another).
    Column {
        title: "INTERNAL",
        width: Constraint::Min(13),
    },
    Column {
        title: "EXTERNAL",
        width: Constraint::Min(15),
    },
    Column {
        title: "PORTS",
        width: Constraint::Length(7),
    },
    Column {
        title: "STATE",
        width: Constraint::Length(8),
    },
    Column {
        title: "SERVER",
        width: Constraint::Length(8),
    },
    Column {
        title: "OWNER",
        width: Constraint::Length(8),
    },
];

/// The kind as operators say it: `internal IP`, `external IP`, `IP mapping`, `gateway`.
pub fn kind_name(kind: ConnectionKind) -> &'static str {
    match kind {
        ConnectionKind::InternalIp => "internal IP",
        ConnectionKind::ExternalIp => "external IP",
        ConnectionKind::IpMapping => "IP mapping",
        ConnectionKind::Gateway => "gateway",
    }
}

/// What reaches the server from outside: `all` ports (an external IP, or an IP mapping that
/// lists none), the mapped ports in order, or `-` (nothing comes in).
pub fn ports(c: &ConnectionView) -> String {
    match c.kind {
        ConnectionKind::ExternalIp => "all".into(),
        ConnectionKind::IpMapping if c.ports.is_empty() => "all".into(),
        ConnectionKind::IpMapping => {
            let mut ports = c.ports.clone();
            ports.sort_unstable();
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }
        ConnectionKind::InternalIp | ConnectionKind::Gateway => "-".into(),
    }
}

/// `active` or `inactive`.
pub fn state_name(active: bool) -> &'static str {
    if active {
        "active"
    } else {
        "inactive"
    }
}

/// The address plan for describe: the internal network's line and the external pool's.
pub fn address_plan(n: &NetworkView) -> (String, String) {
    let internal = format!(
        "{}, gateway {}, {} used",
        n.internal_cidr, n.internal_gateway, n.internal_used
    );
    let external = if n.external_pool.is_empty() {
        "none (skiff network set --external-pool FIRST-LAST)".to_owned()
    } else {
        format!(
            "{}, {} of {} used",
            n.external_pool.join(" "),
            n.external_used,
            n.external_total
        )
    };
    (internal, external)
}

/// One row's cells, one per column.
pub fn cells(c: &ConnectionView, theme: &Theme) -> Vec<Line<'static>> {
    let state = if c.active { theme.good } else { theme.warn };
    vec![
        Line::raw(c.name.clone()),
        Line::raw(kind_name(c.kind)),
        Line::raw(c.internal_ip.to_string()),
        Line::raw(
            c.external_ip
                .map_or_else(|| "-".into(), |ip| ip.to_string()),
        ),
        Line::raw(ports(c)),
        Line::styled(state_name(c.active), state),
        Line::raw(c.server.clone().unwrap_or_else(|| "-".into())),
        Line::raw(c.owner.clone()),
    ]
}

/// What column `col` sorts by: kinds in their declared order, addresses by value, ports by the
/// lowest one (none first, all last).
pub fn sort_key(c: &ConnectionView, col: usize) -> SortKey {
    match col {
        // As the kinds are declared: internal IP, external IP, IP mapping, gateway.
        1 => SortKey::num(c.kind as u64),
        2 => SortKey::num(u64::from(u32::from(c.internal_ip))),
        3 => SortKey::opt(c.external_ip.map(|ip| u64::from(u32::from(ip)))),
        4 => match ports(c).as_str() {
            "-" => SortKey::Num(-1),
            "all" => SortKey::num(u64::from(u16::MAX) + 1),
            _ => SortKey::opt(c.ports.iter().min().map(|p| u64::from(*p))),
        },
        5 => SortKey::num(u64::from(c.active)),
        6 => match &c.server {
            Some(s) => SortKey::text(s),
            None => SortKey::Num(-1),
        },
        7 => SortKey::text(&c.owner),
        _ => SortKey::text(&c.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cockpit::fixtures;

    fn find(name: &str) -> ConnectionView {
        fixtures::connections()
            .into_iter()
            .find(|c| c.name == name)
            .expect("in the fixtures")
    }

    #[test]
    fn ports_say_what_comes_in() {
        assert_eq!(ports(&find("web-http")), "80,443");
        assert_eq!(ports(&find("ssh-all")), "all");
        assert_eq!(ports(&find("web-ip")), "all");
        assert_eq!(ports(&find("db-lan")), "-");
        assert_eq!(ports(&find("batch-out")), "-");
    }

    #[test]
    fn addresses_sort_by_value_not_text() {
        let mut a = find("db-lan");
        let mut b = a.clone();
        a.internal_ip = "10.47.0.9".parse().expect("address");
        b.internal_ip = "10.47.0.10".parse().expect("address");
        assert!(sort_key(&a, 2) < sort_key(&b, 2));
        // No external address sorts first.
        assert!(sort_key(&a, 3) < sort_key(&find("web-ip"), 3));
        // Ports: none, then the lowest listed, then all.
        let none = sort_key(&find("db-lan"), 4);
        let listed = sort_key(&find("web-http"), 4);
        let all = sort_key(&find("ssh-all"), 4);
        assert!(none < listed && listed < all);
    }

    #[test]
    fn the_address_plan() {
        let mut n = fixtures::network();
        assert_eq!(
            address_plan(&n),
            (
                "10.47.0.0/16, gateway 10.47.0.1, 5 used".to_owned(),
                "203.0.113.10-203.0.113.20, 3 of 11 used".to_owned()
            )
        );
        n.external_pool.clear();
        assert_eq!(
            address_plan(&n).1,
            "none (skiff network set --external-pool FIRST-LAST)"
        );
    }
}
