//! The multi-host proof: three real `skiffd` processes on three network-namespace hosts form a
//! cluster with three Raft voters; killing the leader with `kill -9` elects another one, and a host
//! cut off by taking its link down is seen dead, then alive again when the link comes back.
//!
//! The `skiff` client runs in the root namespace and reaches the hosts through the lab's bridge.
//! Needs root and iproute2 (see `skiff_tests::netns`); elsewhere it prints `SKIPPED: ...`.
//! Run it alone, with the measured times: `cargo test -p skiff-tests --test multihost -- --nocapture`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use skiff_cluster::config::NodeConfig;
use skiff_cluster::credential::Credential;
use skiff_tests::bins;
use skiff_tests::netns::{self, output_with_timeout, Lab, Process};

const PORT: u16 = 7400;
/// Longest wait for any one expected change (election, failure detection, recovery).
const DEADLINE: Duration = Duration::from_secs(30);
/// One `skiff` invocation may take this long before it counts as a failed poll.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// One row of `skiff node list -o json`.
#[derive(Clone, Debug)]
struct NodeRow {
    name: String,
    alive: bool,
    leader: bool,
    voter: bool,
    term: u64,
}

fn rows(json: &str) -> anyhow::Result<Vec<NodeRow>> {
    let v: Value =
        serde_json::from_str(json).with_context(|| format!("node list is not JSON: {json}"))?;
    let arr = v.as_array().context("node list is not a JSON array")?;
    arr.iter()
        .map(|n| {
            let s = |k: &str| n.get(k).and_then(Value::as_str).map(str::to_string);
            let b = |k: &str| n.get(k).and_then(Value::as_bool);
            Ok(NodeRow {
                name: s("name").context("node without name")?,
                alive: b("alive").context("node without alive")?,
                leader: b("leader").context("node without leader")?,
                voter: b("voter").context("node without voter")?,
                term: n.get("term").and_then(Value::as_u64).unwrap_or(0),
            })
        })
        .collect()
}

fn summary(rows: &[NodeRow]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "{}({}{}{}, term {})",
                r.name,
                if r.alive { "alive" } else { "dead" },
                if r.leader { ", leader" } else { "" },
                if r.voter { ", voter" } else { "" },
                r.term
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn leaders(rows: &[NodeRow]) -> Vec<&str> {
    rows.iter()
        .filter(|r| r.leader)
        .map(|r| r.name.as_str())
        .collect()
}

fn row<'a>(rows: &'a [NodeRow], name: &str) -> Option<&'a NodeRow> {
    rows.iter().find(|r| r.name == name)
}

/// Runs `skiff --cred CRED ARGS` in the root namespace; `Err` holds the exit status and stderr.
fn skiff(cred: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = std::process::Command::new(bins::path("skiff"));
    cmd.arg("--cred").arg(cred).args(args);
    let out = output_with_timeout(&mut cmd, CLIENT_TIMEOUT)
        .with_context(|| format!("skiff {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "skiff {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn node_list(cred: &Path) -> anyhow::Result<Vec<NodeRow>> {
    rows(&skiff(cred, &["node", "list", "-o", "json"])?)
}

/// Calls `check` every `POLL` until it returns `Ok(Some(..))`, for at most `DEADLINE`; returns
/// the time it took and the value. `Ok(None)` and `Err` mean "not yet"; the timeout error shows the
/// last of them (`check` describes what it saw in its `Err`).
fn poll<T>(
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<(Duration, T)> {
    let start = Instant::now();
    let mut last = String::from("(nothing yet)");
    while start.elapsed() < DEADLINE {
        match check() {
            Ok(Some(v)) => return Ok((start.elapsed(), v)),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(POLL);
    }
    bail!("timed out after {DEADLINE:?} waiting for {what}; last seen: {last}")
}

/// Polls `skiff node list -o json` until `done` holds; returns the time it took and the list.
fn wait_for(
    what: &str,
    cred: &Path,
    done: impl Fn(&[NodeRow]) -> bool,
) -> anyhow::Result<(Duration, Vec<NodeRow>)> {
    poll(what, || {
        let list = node_list(cred)?;
        if done(&list) {
            Ok(Some(list))
        } else {
            bail!("{}", summary(&list))
        }
    })
}

/// `skiff cluster -o json`: the answering leader's name and Raft term.
fn leader_and_term(cred: &Path) -> anyhow::Result<(Option<String>, u64)> {
    let out = skiff(cred, &["cluster", "-o", "json"])?;
    let v: Value =
        serde_json::from_str(&out).with_context(|| format!("cluster view is not JSON: {out}"))?;
    let leader = v.get("leader").and_then(Value::as_str).map(str::to_string);
    let term = v
        .get("term")
        .and_then(Value::as_u64)
        .context("cluster view without term")?;
    Ok((leader, term))
}

/// A copy of `cred` whose endpoints are `endpoints`, written to `to`.
fn credential_for(
    cred: &Credential,
    endpoints: Vec<String>,
    to: PathBuf,
) -> anyhow::Result<PathBuf> {
    let mut c = cred.clone();
    c.endpoints = endpoints;
    std::fs::write(&to, c.to_toml())?;
    Ok(to)
}

/// Faster failure detection than the defaults, so the test runs in seconds.
fn tune(data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join("node.toml");
    let mut cfg = NodeConfig::load(&path)?;
    cfg.gossip.interval_ms = 200;
    cfg.gossip.phi_threshold = 5.0;
    std::fs::write(&path, cfg.to_toml())?;
    NodeConfig::load(&path).context("tuned node.toml is refused")?;
    Ok(())
}

struct Cluster {
    lab: Lab,
    names: Vec<String>,
    data: Vec<PathBuf>,
    procs: Vec<Process>,
    /// Credential listing all three hosts.
    cred_all: PathBuf,
    cred: Credential,
}

impl Cluster {
    /// Credential listing only host `i`'s API (to read that node's own view).
    fn cred_of(&self, i: usize) -> anyhow::Result<PathBuf> {
        let to = self.lab.dir().join(format!("cred-h{}", i + 1));
        credential_for(
            &self.cred,
            vec![self.lab.host(i).addr(PORT).to_string()],
            to,
        )
    }

    fn index_of(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .expect("known node name")
    }
}

fn start_cluster() -> anyhow::Result<Cluster> {
    let mut lab = Lab::new(3)?;
    let skiffd = bins::path("skiffd");
    let names: Vec<String> = (1..=3).map(|i| format!("node{i}")).collect();
    let base = lab.dir().to_path_buf();
    let data = |i: usize| base.join(&names[i]);
    let addr = |lab: &Lab, i: usize| lab.host(i).addr(PORT).to_string();
    let long = Duration::from_secs(60);
    let started = Instant::now();

    // Host 1 creates the cluster.
    let d1 = data(0);
    let a1 = addr(&lab, 0);
    lab.exec(
        0,
        &skiffd,
        [
            "init",
            "--data-dir",
            path_str(&d1)?,
            "--name",
            &names[0],
            "--listen",
            &a1,
        ],
        long,
    )?;
    tune(&d1)?;
    let mut procs =
        vec![lab.spawn(0, &names[0], &skiffd, ["run", "--data-dir", path_str(&d1)?])?];

    let cred = Credential::load(&d1.join("admin.credential"))?;
    let endpoints: Vec<String> = (0..3).map(|i| addr(&lab, i)).collect();
    let cred_all = credential_for(&cred, endpoints, lab.dir().join("cred-all"))?;
    let cred1 = credential_for(&cred, vec![a1.clone()], lab.dir().join("cred-h1"))?;
    wait_for("node1 to answer", &cred1, |l| {
        l.len() == 1 && l[0].alive && l[0].leader
    })?;

    // Hosts 2 and 3 join as admin-eligible learners.
    for (i, name) in names.iter().enumerate().skip(1) {
        let token = skiff(&cred1, &["node", "token", "--ttl", "1h"])?
            .trim()
            .to_string();
        let d = data(i);
        let a = addr(&lab, i);
        lab.exec(
            i,
            &skiffd,
            [
                "join",
                "--data-dir",
                path_str(&d)?,
                "--name",
                name,
                "--listen",
                &a,
                "--seed",
                &a1,
                "--token",
                &token,
                "--admin-eligible",
            ],
            long,
        )?;
        tune(&d)?;
        procs.push(lab.spawn(i, name, &skiffd, ["run", "--data-dir", path_str(&d)?])?);
    }
    let (t, list) = wait_for("3 nodes alive", &cred_all, |l| {
        l.len() == 3 && l.iter().all(|r| r.alive)
    })?;
    eprintln!("3 nodes alive after {t:?}: {}", summary(&list));

    skiff(&cred_all, &["node", "promote", &names[1], &names[2]])?;
    let (t, list) = wait_for("3 voters", &cred_all, |l| {
        l.len() == 3 && l.iter().all(|r| r.alive && r.voter) && leaders(l).len() == 1
    })?;
    eprintln!("3 voters after {t:?}: {}", summary(&list));
    eprintln!("cluster of 3 hosts up in {:?}", started.elapsed());
    let data = (0..3).map(data).collect();
    Ok(Cluster {
        lab,
        names,
        data,
        procs,
        cred_all,
        cred,
    })
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

#[test]
fn three_hosts_fail_over_and_detect_partitions() {
    if !netns::available_or_skip("three_hosts_fail_over_and_detect_partitions") {
        return;
    }
    let mut c = start_cluster().expect("a cluster of 3 hosts");

    // (a) three nodes alive, exactly one leader.
    let list = node_list(&c.cred_all).expect("node list");
    assert_eq!(list.len(), 3, "{}", summary(&list));
    assert!(
        list.iter().all(|r| r.alive && r.voter),
        "{}",
        summary(&list)
    );
    let ls = leaders(&list);
    assert_eq!(ls.len(), 1, "exactly one leader: {}", summary(&list));
    let old_leader = ls[0].to_string();
    let (_, old_term) = leader_and_term(&c.cred_all).expect("cluster view");
    eprintln!("(a) 3 nodes alive, leader {old_leader} (term {old_term})");

    // (b) kill -9 the leader: another node becomes leader; the killed one is seen dead.
    let li = c.index_of(&old_leader);
    let killed = c.procs[li].clone();
    c.lab.kill9(&killed).expect("kill -9 the leader");
    // One loop watches both, so that each time is when it was first seen (the list is only
    // served while there is a leader, so the death cannot be seen before the failover).
    let killed_at = Instant::now();
    let (mut failover, mut dead_at) = (None, None);
    let (_, list) = poll("a new leader that lists the killed one dead", || {
        let list = node_list(&c.cred_all)?;
        let ls = leaders(&list);
        if failover.is_none() && ls.len() == 1 && ls[0] != old_leader {
            failover = Some(killed_at.elapsed());
        }
        if dead_at.is_none() && row(&list, &old_leader).is_some_and(|r| !r.alive) {
            dead_at = Some(killed_at.elapsed());
        }
        match (failover, dead_at) {
            (Some(_), Some(_)) if ls.len() == 1 && ls[0] != old_leader => Ok(Some(list)),
            _ => bail!("{}", summary(&list)),
        }
    })
    .expect("failover");
    let (failover, dead_at) = (failover.expect("seen"), dead_at.expect("seen"));
    let new_leader = leaders(&list)[0].to_string();
    eprintln!(
        "(b) failover: {new_leader} is leader {:.2} s after kill -9 of {old_leader}; \
         {old_leader} seen dead (alive: false) {:.2} s after the kill: {}",
        failover.as_secs_f64(),
        dead_at.as_secs_f64(),
        summary(&list)
    );
    let (_, new_term) = poll("the new leader's term in the cluster view", || {
        let (leader, term) = leader_and_term(&c.cred_all)?;
        if leader.as_deref() == Some(new_leader.as_str()) {
            Ok(Some(term))
        } else {
            bail!("leader {leader:?}, term {term}")
        }
    })
    .expect("cluster view names the new leader");
    assert!(
        new_term > old_term,
        "the term must grow: {old_term} -> {new_term}"
    );
    eprintln!("(b) Raft term {old_term} -> {new_term}");

    // A crashed node that restarts comes back: restart it, so that the partition below leaves a
    // quorum (2 of 3 voters) on the leader's side.
    let d = c.data[li].clone();
    let skiffd = bins::path("skiffd");
    let restarted = c
        .lab
        .spawn(
            li,
            &old_leader,
            &skiffd,
            ["run", "--data-dir", path_str(&d).unwrap()],
        )
        .expect("restart the killed node");
    c.procs[li] = restarted;
    let (back, list) = wait_for("the restarted node to be seen alive", &c.cred_all, |l| {
        l.iter().all(|r| r.alive) && leaders(l).len() == 1
    })
    .expect("the restarted node rejoins");
    eprintln!(
        "(b) {old_leader} restarted: seen alive again after {:.2} s: {}",
        back.as_secs_f64(),
        summary(&list)
    );

    // (c) partition a surviving follower by taking its link down; the leader's list shows it dead,
    // then alive again once the link is back.
    let ni = c.index_of(leaders(&list)[0]);
    let new_leader = c.names[ni].clone();
    let fi = (0..3)
        .find(|&i| i != li && i != ni)
        .expect("a surviving follower");
    let follower = c.names[fi].clone();
    let cred_leader = c.cred_of(ni).expect("leader credential");
    c.lab.link_down(fi).expect("link down");
    let (down, list) = wait_for(
        "the partitioned follower to be seen dead",
        &cred_leader,
        |l| row(l, &follower).is_some_and(|r| !r.alive),
    )
    .expect("partition detected");
    eprintln!(
        "(c) {follower} link down: seen dead by leader {new_leader} after {:.2} s: {}",
        down.as_secs_f64(),
        summary(&list)
    );
    assert!(
        c.lab.is_running(&c.procs[fi]),
        "the partitioned follower's process must still run"
    );
    c.lab.link_up(fi).expect("link up");
    let (up, list) = wait_for("the follower to be seen alive again", &cred_leader, |l| {
        row(l, &follower).is_some_and(|r| r.alive)
    })
    .expect("recovery detected");
    eprintln!(
        "(c) {follower} link up: seen alive again after {:.2} s: {}",
        up.as_secs_f64(),
        summary(&list)
    );
    let ls = leaders(&list);
    assert_eq!(
        ls.len(),
        1,
        "exactly one leader after the partition healed: {}",
        summary(&list)
    );

    eprintln!(
        "multihost summary: failover {:.2} s; dead leader detected {:.2} s after kill; partition detected {:.2} s; heal detected {:.2} s",
        failover.as_secs_f64(),
        dead_at.as_secs_f64(),
        down.as_secs_f64(),
        up.as_secs_f64()
    );
    // The lab (dropped here) kills the processes and removes namespaces, veths and the bridge.
}
