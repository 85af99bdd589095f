//! The describe pane: every field of one object, as indented `name: value` lines.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;
use serde_json::Value;

use super::{connections, find, servers, stacks, ViewKind};
use crate::cockpit::app::App;
use crate::cockpit::theme::Theme;
use crate::output::format_unix_utc;

/// The object of `view` with `key`, as JSON (what the API said, merged for servers; connections
/// also get their creation time in words and the cluster's address plan; stacks their creation
/// time in words, how many servers run and one line per server).
pub fn object(app: &App, view: ViewKind, key: &str) -> Option<Value> {
    let i = find(app, view, key)?;
    let value = match view {
        ViewKind::Nodes => serde_json::to_value(app.nodes.get(i)?),
        ViewKind::Servers => serde_json::to_value(app.servers.get(i)?),
        ViewKind::Tasks => serde_json::to_value(app.tasks.get(i)?),
        ViewKind::Users => serde_json::to_value(app.users.get(i)?),
        ViewKind::Events => serde_json::to_value(app.events.get(i)?),
        ViewKind::Audit => serde_json::to_value(app.audit.get(i)?),
        ViewKind::Pools => serde_json::to_value(app.pools.get(i)?),
        ViewKind::Images => serde_json::to_value(app.images.get(i)?),
        ViewKind::Backups => serde_json::to_value(app.backups.get(i)?),
        ViewKind::Connections => {
            let c = app.connections.get(i)?;
            let mut value = serde_json::to_value(c).ok()?;
            if let Value::Object(map) = &mut value {
                map.insert("created".into(), format_unix_utc(c.created_at).into());
                if let Some(n) = &app.network {
                    let (internal, external) = connections::address_plan(n);
                    let plan = serde_json::json!({ "internal": internal, "external": external });
                    map.insert("address_plan".into(), plan);
                }
            }
            Ok(value)
        }
        ViewKind::Stacks => {
            let st = app.stacks.get(i)?;
            let mut value = serde_json::to_value(st).ok()?;
            if let Value::Object(map) = &mut value {
                map.insert("created".into(), format_unix_utc(st.created_at).into());
                let running = format!("{} of {}", stacks::running(app, st), st.servers.len());
                map.insert("running".into(), running.into());
                let members: Vec<Value> = st
                    .servers
                    .iter()
                    .map(|m| stack_member(app, &m.name, m).into())
                    .collect();
                map.insert("members".into(), Value::Array(members));
            }
            Ok(value)
        }
        _ => return None,
    };
    value.ok()
}

/// One server of a stack in a line: `web-1: running on node-1 (desired running)`; what the
/// reconciler saw when the cockpit knows the server, else `not seen`.
fn stack_member(app: &App, name: &str, copy: &skiff_cluster::api::servers::ServerView) -> String {
    let row = app
        .servers
        .binary_search_by(|s| s.view.name.as_str().cmp(name))
        .ok()
        .and_then(|i| app.servers.get(i));
    let view = row.map_or(copy, |r| &r.view);
    let power = row
        .and_then(|r| r.actual.as_ref())
        .map_or("not seen", |a| servers::power_name(a.power));
    let node = view.node.as_deref().unwrap_or("no node");
    format!(
        "{name}: {power} on {node} (desired {})",
        servers::desired_name(view.desired)
    )
}

/// `value` as indented lines: `name: value`, lists as `- item`.
pub fn lines(value: &Value, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    walk(value, 0, None, theme, &mut out);
    out
}

fn scalar(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => "-".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        _ => return None,
    })
}

fn walk(v: &Value, depth: usize, label: Option<&str>, theme: &Theme, out: &mut Vec<Line<'static>>) {
    let indent = "  ".repeat(depth);
    let head = |out: &mut Vec<Line<'static>>, rest: Option<String>| {
        let mut spans = vec![Span::raw(indent.clone())];
        if let Some(label) = label {
            spans.push(Span::styled(format!("{label}:"), theme.label));
        }
        if let Some(rest) = rest {
            spans.push(Span::raw(if label.is_some() { " " } else { "" }));
            spans.push(Span::styled(rest, theme.value));
        }
        out.push(Line::from(spans));
    };
    if let Some(s) = scalar(v) {
        head(out, Some(s));
        return;
    }
    let inner = if label.is_some() {
        head(out, None);
        depth + 1
    } else {
        depth
    };
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                walk(item, inner, Some(k), theme, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                match scalar(item) {
                    Some(s) => out.push(Line::from(vec![
                        Span::raw(format!("{}- ", "  ".repeat(inner))),
                        Span::styled(s, theme.value),
                    ])),
                    None => {
                        out.push(Line::raw(format!("{}-", "  ".repeat(inner))));
                        walk(item, inner + 1, None, theme, out);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Draws the pane, from line `scroll`.
pub fn render(
    app: &App,
    view: ViewKind,
    key: &str,
    scroll: usize,
    block: Block<'_>,
    frame: &mut Frame,
    area: Rect,
) {
    let lines = match object(app, view, key) {
        Some(value) => lines(&value, &app.theme),
        None => vec![Line::styled(
            format!("{key} is gone from the {} list.", view.name()),
            app.theme.warn,
        )],
    };
    let height = usize::from(area.height.saturating_sub(2));
    let top = scroll.min(lines.len().saturating_sub(height));
    let shown: Vec<Line> = lines.into_iter().skip(top).take(height).collect();
    frame.render_widget(Paragraph::new(shown).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_values() {
        let v = serde_json::json!({"name": "web", "spec": {"vcpus": 2, "disks": [{"pool": "local"}], "tags": ["a"]}, "node": null, "nics": []});
        let text: Vec<String> = lines(&v, &Theme::mono())
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.to_string()).collect())
            .collect();
        assert_eq!(
            text,
            [
                "name: web",
                "nics: []",
                "node: -",
                "spec:",
                "  disks:",
                "    -",
                "      pool: local",
                "  tags:",
                "    - a",
                "  vcpus: 2",
            ]
        );
    }
}
