//! The `skiff-agent/1` handler every node serves: carries out the leader's `Report`, `Ensure` and
//! `Remove` against this node's [`Hypervisor`], and takes other nodes' `Changed` hints (it wakes
//! this node's reconciler, which acts only while the node leads). Every request is idempotent: `Ensure` looks at what
//! exists and does only what is missing, so repeating it (after a timeout, a restart, a change of
//! leader) is harmless. Requests for the same server are carried out one at a time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_cluster::agentproto::{
    AgentErrorCode, AgentReply, AgentReport, AgentRequest, DomainPower, DomainReport, PowerAction,
    MAX_CONSOLE_BYTES,
};
use skiff_cluster::state::servers::PowerState;
use skiff_cluster::state::{ImageOp, ServerRecord};
use skiff_cluster::transport::{PeerInfo, RequestHandler};
use tracing::{debug, info, warn};

use super::{DomainInfo, DomainSpec, Hypervisor, HypervisorError, ShutdownOutcome};

/// Serves `skiff-agent/1` on one node.
pub struct AgentHandler {
    node: String,
    generation: u64,
    hypervisor: Option<Arc<dyn Hypervisor>>,
    /// One lock per server name, so two requests never work on one domain at once.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// HA leases of this node: which servers are highly available, and whether they may run.
    fencing: Option<Arc<crate::fencing::Fencing>>,
    /// Makes and removes the servers' disk images (`None`: the fake hypervisor, no disks).
    disks: Option<super::disks::DiskProvisioner>,
    /// The servers' latest live figures, for reports.
    figures: Option<Arc<super::figures::Sampler>>,
    /// The node's pools, for `Image`, `Backup`, `SetAside` and `Pools` work.
    images: Option<crate::storage::pools::Pools>,
    /// Wakes this node's reconciler when another node reports a change (`Changed`).
    reconcile_wake: Option<Arc<tokio::sync::Notify>>,
    /// Slots for heavy disk work (`Image`, `Backup`): at most [`HEAVY_WORK_SLOTS`] at once, so a
    /// burst of conversions or backups cannot take every disk and core from the running guests.
    heavy: Arc<tokio::sync::Semaphore>,
}

/// How many `Image` and `Backup` requests a node carries out at once; the others wait their
/// turn (in arrival order) while the leader's request waits for the answer.
pub const HEAVY_WORK_SLOTS: usize = 2;

impl AgentHandler {
    /// `hypervisor: None`: this node does not run servers (compute disabled).
    pub fn new(node: String, hypervisor: Option<Arc<dyn Hypervisor>>) -> Self {
        AgentHandler {
            node,
            generation: skiff_cluster::gossip::new_generation(),
            hypervisor,
            locks: Mutex::new(HashMap::new()),
            fencing: None,
            disks: None,
            figures: None,
            images: None,
            reconcile_wake: None,
            heavy: Arc::new(tokio::sync::Semaphore::new(HEAVY_WORK_SLOTS)),
        }
    }

    /// Wakes `wake` (the reconciler's) on every `Changed` hint from a node.
    pub fn with_reconcile_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.reconcile_wake = Some(wake);
        self
    }

    /// Adds the servers' live figures from `sampler` to every report.
    pub fn with_figures(mut self, sampler: Arc<super::figures::Sampler>) -> Self {
        self.figures = Some(sampler);
        self
    }

    /// Carries out `Image` work in `pools` (the node's).
    pub fn with_images(mut self, pools: crate::storage::pools::Pools) -> Self {
        self.images = Some(pools);
        self
    }

    /// Makes the disks of the servers it ensures, and removes them with the servers.
    pub fn with_disks(mut self, disks: super::disks::DiskProvisioner) -> Self {
        self.disks = Some(disks);
        self
    }

    /// Tells the handler about this node's HA leases: it records which servers are highly
    /// available and refuses to run one while the node holds no lease.
    pub fn with_fencing(mut self, fencing: Arc<crate::fencing::Fencing>) -> Self {
        self.fencing = Some(fencing);
        self
    }

    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = match self.locks.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(name.to_string()).or_default().clone()
    }

    /// Answers one request (already decoded).
    pub async fn serve(&self, req: AgentRequest) -> AgentReply {
        // A hint for the leader, whether or not this node runs servers itself.
        if let AgentRequest::Changed { node, server } = &req {
            debug!(%node, %server, "a node reports a change: reconciling early");
            if let Some(w) = &self.reconcile_wake {
                // One stored permit at most: a burst of hints makes one early pass.
                w.notify_one();
            }
            return AgentReply::Done {
                log: Vec::new(),
                domain: None,
            };
        }
        let Some(h) = self.hypervisor.clone() else {
            return AgentReply::error(
                AgentErrorCode::ComputeDisabled,
                format!(
                    "node {} does not run servers ([compute] enabled = false)",
                    self.node
                ),
            );
        };
        let name = match &req {
            AgentRequest::Report => None,
            AgentRequest::Ensure { server, .. } => Some(server.name.clone()),
            AgentRequest::Remove { name, .. } => Some(name.clone()),
            AgentRequest::Image { name, .. } => Some(format!("image:{name}")),
            AgentRequest::Backup { id, .. } => Some(format!("backup:{id}")),
            // Reading the console needs no lock: it changes nothing.
            AgentRequest::SetAside { name, .. } => Some(format!("image:{name}")),
            AgentRequest::Pools { .. } => Some("pools".to_string()),
            AgentRequest::Console { .. } | AgentRequest::Changed { .. } => None,
        };
        let lock = name.as_deref().map(|n| self.lock_for(n));
        let _guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        if let Some(f) = &self.fencing {
            match &req {
                AgentRequest::Ensure { server, .. } => {
                    if server.spec.ha
                        && server.desired != skiff_cluster::state::servers::PowerState::Stopped
                        && !f.holds_lease()
                    {
                        return AgentReply::error(
                            AgentErrorCode::NoLease,
                            format!(
                                "node {} holds no HA lease: it does not run highly available servers now",
                                self.node
                            ),
                        );
                    }
                }
                AgentRequest::Remove { .. }
                | AgentRequest::Image { .. }
                | AgentRequest::Backup { .. }
                | AgentRequest::Report
                | AgentRequest::Console { .. }
                | AgentRequest::SetAside { .. }
                | AgentRequest::Pools { .. }
                | AgentRequest::Changed { .. } => {}
            }
        }
        // Heavy disk work waits for a slot (after its object's lock: the same image twice
        // never takes two slots).
        let _slot = match &req {
            AgentRequest::Image { .. } | AgentRequest::Backup { .. } => {
                self.heavy.clone().acquire_owned().await.ok()
            }
            _ => None,
        };
        let (node, generation) = (self.node.clone(), self.generation);
        let disks = self.disks.clone();
        let images = self.images.clone();
        let figures = self
            .figures
            .as_ref()
            .map(|s| s.latest())
            .unwrap_or_default();
        let work = tokio::task::spawn_blocking(move || match req {
            AgentRequest::Report => match h.list() {
                Ok(domains) => AgentReply::Report(AgentReport {
                    node,
                    agent_generation: generation,
                    hypervisor: h.kind().to_string(),
                    domains: domains.into_iter().map(report_of).collect(),
                    figures,
                    // A pool that cannot be listed reports no list (not an empty one): the
                    // leader then neither sets aside nor misses anything there.
                    images: images.as_ref().and_then(|p| p.files()),
                    pools: images.as_ref().map(|p| p.report()),
                }),
                Err(e) => AgentReply::error(AgentErrorCode::Hypervisor, e.to_string()),
            },
            AgentRequest::Ensure {
                server,
                action,
                force_after_secs,
            } => {
                let paths = match disks.as_ref().map(|d| d.ensure(&server)) {
                    None => Vec::new(),
                    Some(Ok(paths)) => paths,
                    Some(Err(e)) => {
                        return AgentReply::error(
                            AgentErrorCode::Hypervisor,
                            format!("disks of {}: {e}", server.name),
                        )
                    }
                };
                reply_of(ensure_with_disks(
                    h.as_ref(),
                    &server,
                    paths,
                    action,
                    Duration::from_secs(force_after_secs),
                ))
            }
            AgentRequest::Console { name, max_bytes } => {
                match h.console_tail(&name, max_bytes.min(MAX_CONSOLE_BYTES)) {
                    Ok((text, truncated)) => AgentReply::Console { text, truncated },
                    Err(e) => AgentReply::error(AgentErrorCode::Hypervisor, e.to_string()),
                }
            }
            // Answered above.
            AgentRequest::Changed { .. } => AgentReply::Done {
                log: Vec::new(),
                domain: None,
            },
            AgentRequest::Image { name, op, pool } => pool_work(&node, &images, &pool, |store| {
                // A master that the work reads may be in another pool of the node.
                let source = match &op {
                    ImageOp::Clone { from } | ImageOp::Convert { from, .. } => images
                        .as_ref()
                        .and_then(|p| p.find(from))
                        .unwrap_or_else(|| store.clone()),
                    _ => store.clone(),
                };
                crate::storage::work::carry_out(store, &source, &name, &op)
                    .map_err(|e| e.to_string())
            }),
            AgentRequest::Pools { pools } => match &images {
                // Done when every pool is usable; otherwise an error naming the unusable ones
                // (the leader tries again after a while, as with any failed work).
                Some(p) => {
                    let log = p.set(pools);
                    let unusable: Vec<String> = p
                        .report()
                        .into_iter()
                        .filter_map(|r| r.error.map(|e| format!("pool {}: {e}", r.name)))
                        .collect();
                    if unusable.is_empty() {
                        AgentReply::Done { log, domain: None }
                    } else {
                        AgentReply::error(AgentErrorCode::Hypervisor, unusable.join("; "))
                    }
                }
                None => AgentReply::error(
                    AgentErrorCode::ComputeDisabled,
                    format!("node {node} keeps no pools"),
                ),
            },
            AgentRequest::SetAside { name, pool } => pool_work(&node, &images, &pool, |store| {
                Ok(vec![
                    match store.set_aside(&name).map_err(|e| e.to_string())? {
                        Some(to) => format!("set {name} aside: {}", to.display()),
                        None => format!("{name} is gone already"),
                    },
                ])
            }),
            AgentRequest::Backup {
                op,
                pool,
                whole_pool: true,
                at,
                ..
            } => pools_work(&node, &images, |p| {
                p.zfs_backup(&pool, op, at)
                    .map_err(|e| format!("node {node}: {e}"))
            }),
            AgentRequest::Backup {
                id,
                files,
                op,
                pool,
                ..
            } => pool_work(&node, &images, &pool, |store| {
                crate::storage::work::backup(store, id, &files, op)
            }),
            AgentRequest::Remove { name, shared_disks } => {
                let mut r = remove(h.as_ref(), &name);
                if let (Ok((log, _)), Some(d)) = (&mut r, &disks) {
                    match d.remove(&name, shared_disks) {
                        Ok(removed) => {
                            log.extend(removed.into_iter().map(|n| format!("deleted disk {n}")))
                        }
                        Err(e) => {
                            return AgentReply::error(
                                AgentErrorCode::Hypervisor,
                                format!("{name} is gone but its disks are not: {e}"),
                            )
                        }
                    }
                }
                reply_of(r)
            }
        });
        match work.await {
            Ok(r) => r,
            Err(e) => AgentReply::error(
                AgentErrorCode::Hypervisor,
                format!("agent work failed: {e}"),
            ),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for AgentHandler {
    async fn handle(&self, peer: PeerInfo, body: Vec<u8>) -> Vec<u8> {
        if peer.node_name().is_none() {
            warn!(peer = %peer.addr, "agent request from a peer that is not a node: refused");
            return AgentReply::error(
                AgentErrorCode::Forbidden,
                "only cluster nodes may send agent requests",
            )
            .encode();
        }
        let req = match AgentRequest::decode(&body) {
            Ok(r) => r,
            Err(e) => {
                warn!(peer = %peer.addr, error = %e, "undecodable agent request");
                return AgentReply::error(AgentErrorCode::BadRequest, e.to_string()).encode();
            }
        };
        debug!(from = ?peer.node_name(), request = %req.describe(), "agent request");
        let reply = self.serve(req).await;
        reply.encode()
    }
}

/// Carries out `work` in the node's pool `pool`: its log, or why it failed (a node without the
/// pool, or where it is unusable, says so).
fn pool_work(
    node: &str,
    images: &Option<crate::storage::pools::Pools>,
    pool: &str,
    work: impl FnOnce(&crate::storage::images::ImageStore) -> Result<Vec<String>, String>,
) -> AgentReply {
    pools_work(node, images, |p| {
        let store = p.get(pool).map_err(|e| format!("node {node}: {e}"))?;
        work(&store)
    })
}

/// Carries out `work` with the node's pools: its log, or why it failed (a node without pools
/// says so).
fn pools_work(
    node: &str,
    images: &Option<crate::storage::pools::Pools>,
    work: impl FnOnce(&crate::storage::pools::Pools) -> Result<Vec<String>, String>,
) -> AgentReply {
    let Some(pools) = images else {
        return AgentReply::error(
            AgentErrorCode::Hypervisor,
            format!("node {node} has no image pool"),
        );
    };
    match work(pools) {
        Ok(log) => AgentReply::Done { log, domain: None },
        Err(e) => AgentReply::error(AgentErrorCode::Hypervisor, e),
    }
}

fn report_of(d: DomainInfo) -> DomainReport {
    DomainReport {
        name: d.name,
        power: d.power,
        generation: d.generation,
    }
}

/// What an `Ensure` or `Remove` did: the log, and the domain afterwards; or the failure with
/// what was done before it.
type WorkResult = Result<(Vec<String>, Option<DomainInfo>), (HypervisorError, Vec<String>)>;

fn reply_of(r: WorkResult) -> AgentReply {
    match r {
        Ok((log, domain)) => AgentReply::Done {
            log,
            domain: domain.map(report_of),
        },
        Err((e, log)) => AgentReply::Error {
            code: AgentErrorCode::Hypervisor,
            message: e.to_string(),
            log,
        },
    }
}

fn find(h: &dyn Hypervisor, name: &str) -> Result<Option<DomainInfo>, HypervisorError> {
    Ok(h.list()?.into_iter().find(|d| d.name == name))
}

/// [`ensure_with`] with the default wait before a shutdown is forced.
pub fn ensure(
    h: &dyn Hypervisor,
    server: &ServerRecord,
    action: Option<PowerAction>,
) -> WorkResult {
    let wait = Duration::from_secs(skiff_cluster::state::servers::SHUTDOWN_FORCE_AFTER_SECS);
    ensure_with(h, server, action, wait)
}

/// Makes the domain of `server` exist, defined from its current generation, powered as it
/// desires (after a one-off `action`; a shutdown waits `force_after` before forcing). Does
/// nothing that is already so.
pub fn ensure_with(
    h: &dyn Hypervisor,
    server: &ServerRecord,
    action: Option<PowerAction>,
    force_after: Duration,
) -> WorkResult {
    ensure_with_disks(h, server, Vec::new(), action, force_after)
}

/// [`ensure_with`] for a server whose disks are the images at `disk_paths`.
pub fn ensure_with_disks(
    h: &dyn Hypervisor,
    server: &ServerRecord,
    disk_paths: Vec<PathBuf>,
    action: Option<PowerAction>,
    force_after: Duration,
) -> WorkResult {
    let mut log = Vec::new();
    let r = ensure_steps(h, server, disk_paths, action, force_after, &mut log);
    match r {
        Ok(d) => {
            if !log.is_empty() {
                info!(server = %server.name, steps = ?log, "ensured");
            }
            Ok((log, d))
        }
        Err(e) => Err((e, log)),
    }
}

fn ensure_steps(
    h: &dyn Hypervisor,
    server: &ServerRecord,
    disk_paths: Vec<PathBuf>,
    action: Option<PowerAction>,
    wait: Duration,
    log: &mut Vec<String>,
) -> Result<Option<DomainInfo>, HypervisorError> {
    let name = server.name.as_str();
    let mut spec = DomainSpec::from_server(server);
    spec.disk_paths = disk_paths;
    let mut power = match find(h, name)? {
        None => {
            h.define(&spec)?;
            log.push(format!("defined {name} (generation {})", server.generation));
            DomainPower::Shutoff
        }
        Some(d) if d.generation < server.generation => {
            h.define(&spec)?;
            log.push(format!(
                "updated the definition of {name} (generation {} -> {})",
                d.generation, server.generation
            ));
            d.power
        }
        Some(d) => d.power,
    };
    match action {
        Some(PowerAction::ForceStop) if power != DomainPower::Shutoff => {
            h.destroy(name)?;
            log.push(format!("forced {name} off"));
            power = DomainPower::Shutoff;
        }
        Some(PowerAction::Reboot) if power == DomainPower::Running => {
            h.reboot(name)?;
            log.push(format!("rebooted {name}"));
        }
        _ => {}
    }
    if let Err(e) = drive_power(h, name, server.desired, power, wait, log) {
        // A call of an agent killed mid-way may still be finishing in the hypervisor (libvirt
        // starts a domain paused, then resumes it): what it reached may already be what is
        // wanted.
        match find(h, name)? {
            Some(d) if d.power.satisfies(server.desired) => {
                log.push(format!("{name} is {:?} already", d.power).to_lowercase());
            }
            _ => return Err(e),
        }
    }
    find(h, name)
}

/// Changes the power of `name` (now `power`) to what `desired` asks.
fn drive_power(
    h: &dyn Hypervisor,
    name: &str,
    desired: PowerState,
    power: DomainPower,
    wait: Duration,
    log: &mut Vec<String>,
) -> Result<(), HypervisorError> {
    match (desired, power) {
        (PowerState::Running, DomainPower::Shutoff | DomainPower::Crashed) => {
            if power == DomainPower::Crashed {
                h.destroy(name)?;
                log.push(format!("cleared the crashed {name}"));
            }
            start_patiently(h, name, log)?;
            log.push(format!("started {name}"));
        }
        (PowerState::Running, DomainPower::Paused) => {
            h.resume(name)?;
            log.push(format!("resumed {name}"));
        }
        (PowerState::Stopped, DomainPower::Running) => match h.shutdown(name, wait)? {
            ShutdownOutcome::Graceful => log.push(format!("shut {name} down")),
            ShutdownOutcome::Forced => log.push(format!(
                "{name} ignored the shutdown request for {}s: forced off",
                wait.as_secs()
            )),
        },
        (PowerState::Stopped, DomainPower::Paused | DomainPower::Crashed) => {
            h.destroy(name)?;
            log.push(format!("powered {name} off"));
        }
        (PowerState::Suspended, DomainPower::Running) => {
            h.suspend(name)?;
            log.push(format!("suspended {name}"));
        }
        (PowerState::Suspended, DomainPower::Shutoff | DomainPower::Crashed) => {
            if power == DomainPower::Crashed {
                h.destroy(name)?;
            }
            start_patiently(h, name, log)?;
            h.suspend(name)?;
            log.push(format!("started and suspended {name}"));
        }
        _ => {}
    }
    Ok(())
}

/// Attempts at starting a domain before `Ensure` gives up.
pub const START_ATTEMPTS: u32 = 3;
/// The pause between two attempts.
const START_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Starts `name`, trying again up to [`START_ATTEMPTS`] times: a start can fail for a moment
/// after an agent was killed in the middle of one (libvirtd is still tearing down the QEMU
/// process the dead agent's call began). A domain found running meanwhile counts as started.
fn start_patiently(
    h: &dyn Hypervisor,
    name: &str,
    log: &mut Vec<String>,
) -> Result<(), HypervisorError> {
    let mut attempt = 1;
    loop {
        let Err(e) = h.start(name) else {
            return Ok(());
        };
        if attempt >= START_ATTEMPTS {
            return Err(e);
        }
        log.push(format!("starting {name} failed ({e}); trying again"));
        std::thread::sleep(START_RETRY_PAUSE);
        if find(h, name)?.is_some_and(|d| d.power == DomainPower::Running) {
            return Ok(());
        }
        attempt += 1;
    }
}

/// Stops (forcibly) and undefines the domain if it exists.
pub fn remove(h: &dyn Hypervisor, name: &str) -> WorkResult {
    let mut log = Vec::new();
    let r = (|| -> Result<(), HypervisorError> {
        let Some(d) = find(h, name)? else {
            return Ok(());
        };
        if d.power != DomainPower::Shutoff {
            h.destroy(name)?;
            log.push(format!("forced {name} off"));
        }
        h.undefine(name)?;
        log.push(format!("undefined {name}"));
        Ok(())
    })();
    match r {
        Ok(()) => Ok((log, None)),
        Err(e) => Err((e, log)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::fake::FakeHypervisor;
    use skiff_cluster::state::ServerSpec;

    fn server(desired: PowerState, generation: u64) -> ServerRecord {
        ServerRecord {
            name: "web".into(),
            owner: "alice".into(),
            spec: ServerSpec::new(512, 1),
            node: Some("n1".into()),
            desired,
            created_at: 1,
            generation,
        }
    }

    fn power(h: &FakeHypervisor) -> Option<DomainPower> {
        find(h, "web").unwrap().map(|d| d.power)
    }

    #[test]
    fn ensure_is_idempotent_and_follows_the_desire() {
        let h = FakeHypervisor::new();
        let (log, d) = ensure(&h, &server(PowerState::Running, 1), None).unwrap();
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(d.map(|d| d.power), Some(DomainPower::Running));
        let (log, _) = ensure(&h, &server(PowerState::Running, 1), None).unwrap();
        assert!(log.is_empty(), "nothing to do the second time: {log:?}");
        ensure(&h, &server(PowerState::Suspended, 2), None).unwrap();
        assert_eq!(power(&h), Some(DomainPower::Paused));
        assert_eq!(h.spec("web").map(|s| s.generation), Some(2));
        ensure(&h, &server(PowerState::Stopped, 3), None).unwrap();
        assert_eq!(power(&h), Some(DomainPower::Shutoff));
        ensure(&h, &server(PowerState::Running, 4), None).unwrap();
        h.crash("web");
        ensure(&h, &server(PowerState::Running, 4), None).unwrap();
        assert_eq!(power(&h), Some(DomainPower::Running));
        // An older generation never overwrites a newer definition.
        ensure(&h, &server(PowerState::Running, 3), None).unwrap();
        assert_eq!(h.spec("web").map(|s| s.generation), Some(4));
    }

    #[test]
    fn actions_and_remove() {
        let h = FakeHypervisor::new();
        ensure(&h, &server(PowerState::Running, 1), None).unwrap();
        let (log, _) = ensure(
            &h,
            &server(PowerState::Running, 1),
            Some(PowerAction::Reboot),
        )
        .unwrap();
        assert_eq!(log, vec!["rebooted web".to_string()]);
        let (log, _) = ensure(
            &h,
            &server(PowerState::Stopped, 2),
            Some(PowerAction::ForceStop),
        )
        .unwrap();
        assert!(log.iter().any(|l| l == "forced web off"), "{log:?}");
        assert!(h.journal().iter().any(|j| j == "destroy web"));
        ensure(&h, &server(PowerState::Running, 2), None).unwrap();
        let (log, d) = remove(&h, "web").unwrap();
        assert_eq!(log.len(), 2);
        assert!(d.is_none() && power(&h).is_none());
        let (log, _) = remove(&h, "web").unwrap();
        assert!(log.is_empty(), "removing what is gone is fine");
    }

    #[test]
    fn failures_are_reported_with_the_log() {
        let h = FakeHypervisor::new();
        for _ in 0..START_ATTEMPTS {
            h.fail_next("start");
        }
        let (e, log) = ensure(&h, &server(PowerState::Running, 1), None).unwrap_err();
        assert!(matches!(e, HypervisorError::Failed(_)));
        assert!(
            log[0].starts_with("defined web"),
            "the define happened: {log:?}"
        );
        assert_eq!(
            log.len(),
            START_ATTEMPTS as usize,
            "and each retry: {log:?}"
        );
        // Trying again picks up where it failed.
        let (log, _) = ensure(&h, &server(PowerState::Running, 1), None).unwrap();
        assert_eq!(log, vec!["started web".to_string()]);
    }

    #[test]
    fn a_start_that_fails_once_is_tried_again() {
        let h = FakeHypervisor::new();
        h.fail_next("start");
        let (log, d) = ensure(&h, &server(PowerState::Running, 1), None).unwrap();
        assert_eq!(d.map(|d| d.power), Some(DomainPower::Running));
        assert!(log[1].contains("trying again"), "{log:?}");
        assert_eq!(log.last().map(String::as_str), Some("started web"));
    }

    #[tokio::test]
    async fn garbage_gets_an_error_reply() {
        let h = AgentHandler::new("n1".into(), Some(Arc::new(FakeHypervisor::new())));
        let peer = PeerInfo {
            addr: "127.0.0.1:1".parse().unwrap(),
            identity: None,
        };
        let r = AgentReply::decode(&h.handle(peer, b"{\"request\":\"report\"}".to_vec()).await)
            .unwrap();
        assert!(matches!(
            r,
            AgentReply::Error {
                code: AgentErrorCode::Forbidden,
                ..
            }
        ));
        let node = PeerInfo {
            addr: "127.0.0.1:1".parse().unwrap(),
            identity: Some(skiff_cluster::tls::PeerIdentity {
                subject: skiff_cluster::tls::Subject::Node("n0".into()),
                serial_hex: "01".into(),
            }),
        };
        for junk in [
            &b""[..],
            b"\xff",
            b"{\"request\":\"format_disk\"}",
            b"[1,2]",
        ] {
            let r = AgentReply::decode(&h.handle(node.clone(), junk.to_vec()).await).unwrap();
            assert!(matches!(
                r,
                AgentReply::Error {
                    code: AgentErrorCode::BadRequest,
                    ..
                }
            ));
        }
        let r = h.serve(AgentRequest::Report).await;
        assert!(
            matches!(r, AgentReply::Report(ref rep) if rep.domains.is_empty() && rep.hypervisor == "fake")
        );
        let off = AgentHandler::new("n2".into(), None);
        assert!(matches!(
            off.serve(AgentRequest::Report).await,
            AgentReply::Error {
                code: AgentErrorCode::ComputeDisabled,
                ..
            }
        ));
    }

    /// A stand-in `qemu-img` whose `create` takes 300 ms and notes when it starts and ends.
    fn slow_qemu_img(dir: &std::path::Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("qemu-img");
        let log = dir.join("runs.log");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 echo start >> {log}\n\
                 sleep 0.3\n\
                 for a; do last=\"$a\"; prev=\"$p\"; p=\"$a\"; done\n\
                 touch \"$prev\"\n\
                 echo end >> {log}\n",
                log = log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn heavy_image_work_runs_at_most_two_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let program = slow_qemu_img(dir.path());
        let pool = dir.path().join("pool");
        std::fs::create_dir(&pool).unwrap();
        let store = crate::storage::images::ImageStore::new(pool.clone())
            .unwrap()
            .with_qemu_img(program);
        let h = Arc::new(
            AgentHandler::new("n1".into(), Some(Arc::new(FakeHypervisor::new())))
                .with_images(crate::storage::pools::Pools::single(store)),
        );
        let mut work = tokio::task::JoinSet::new();
        for i in 0..5 {
            let h = h.clone();
            work.spawn(async move {
                h.serve(AgentRequest::Image {
                    name: format!("img{i}"),
                    op: skiff_cluster::state::ImageOp::Create { size_gib: 1 },
                    pool: "local".into(),
                })
                .await
            });
        }
        while let Some(r) = work.join_next().await {
            let r = r.unwrap();
            assert!(matches!(r, AgentReply::Done { .. }), "{r:?}");
        }
        // Replay the start/end marks: never more than two running.
        let runs = std::fs::read_to_string(dir.path().join("runs.log")).unwrap();
        let (mut running, mut most) = (0i32, 0i32);
        for line in runs.lines() {
            running += if line == "start" { 1 } else { -1 };
            most = most.max(running);
        }
        assert_eq!(runs.lines().count(), 10, "{runs}");
        assert_eq!(most, HEAVY_WORK_SLOTS as i32, "{runs}");
        for i in 0..5 {
            assert!(pool.join(format!("img{i}.qcow2")).exists(), "img{i}");
        }
    }
}
