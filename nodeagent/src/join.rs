//! Joining a cluster, both sides.
//!
//! The new node dials a seed over QUIC (ALPN `skiff-join/1`, the only protocol a peer without a
//! certificate may speak), checks that the seed's CA matches the fingerprint in its token *before*
//! sending the token's secret, and sends a CSR. Any node takes the request; a node that is not the
//! leader forwards it to the leader, which checks the token, signs the certificate, and records the
//! node through Raft (the token is used up in the same replicated write).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use skiff_cluster::config::{NodeConfig, NodeFacts};
use skiff_cluster::identity::{self, CertKind, IdentityFiles, NodeIdentity, NODE_SAN};
use skiff_cluster::state::{Command, CommandOutcome, NodeRole};
use skiff_cluster::tls;
use skiff_cluster::token::JoinToken;
use skiff_cluster::transport::{PeerInfo, RequestHandler, ALPN_JOIN};
use tracing::{info, warn};

use crate::agent::{Node, CONFIG_FILE};

/// What a joining node asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub token: String,
    pub name: String,
    pub addr: SocketAddr,
    pub admin_eligible: bool,
    pub csr_pem: String,
}

/// What it gets when the leader accepts it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinAccepted {
    pub cluster_id: String,
    pub node_id: u64,
    pub ca_pem: String,
    pub cert_pem: String,
    pub crl_pem: Option<String>,
    pub seeds: Vec<String>,
}

type JoinReply = Result<JoinAccepted, String>;

/// Serves join requests on every node.
pub struct JoinHandler {
    node: Weak<Node>,
}

impl JoinHandler {
    pub fn new(node: Weak<Node>) -> Self {
        JoinHandler { node }
    }

    async fn process(&self, peer: &PeerInfo, body: &[u8]) -> JoinReply {
        let node = self.node.upgrade().ok_or("the node is shutting down")?;
        let req: JoinRequest =
            serde_json::from_slice(body).map_err(|e| format!("malformed join request: {e}"))?;
        if node.serving_term().is_none() {
            if peer.node_name().is_some() {
                return Err(
                    "the node this request was forwarded to is not the leader; retry".into(),
                );
            }
            let leader = node
                .leader_hint()
                .await
                .ok_or("no leader is known right now; retry in a few seconds")?;
            let reply = node
                .endpoint
                .request(
                    leader.addr,
                    ALPN_JOIN,
                    body.to_vec(),
                    Duration::from_secs(15),
                )
                .await
                .map_err(|e| format!("cannot reach the leader {}: {e}", leader.name))?;
            let reply: JoinReply = serde_json::from_slice(&reply)
                .map_err(|e| format!("the leader sent a malformed reply: {e}"))?;
            return reply;
        }
        accept_join(&node, req).await
    }
}

#[async_trait::async_trait]
impl RequestHandler for JoinHandler {
    async fn handle(&self, peer: PeerInfo, body: Vec<u8>) -> Vec<u8> {
        let reply = self.process(&peer, &body).await;
        if let Err(e) = &reply {
            warn!(peer = %peer.addr, reason = %e, "refused a join request");
        }
        serde_json::to_vec(&reply).unwrap_or_default()
    }
}

async fn accept_join(node: &Node, req: JoinRequest) -> JoinReply {
    let token = JoinToken::parse(&req.token).map_err(|e| e.to_string())?;
    identity::validate_name(&req.name).map_err(|e| e.to_string())?;
    if req.addr.ip().is_unspecified() || req.addr.port() == 0 {
        return Err(format!(
            "{} is not an address other nodes can reach",
            req.addr
        ));
    }
    let state = node.state().ok_or("this node holds no replica")?;
    let ca = state
        .ca
        .clone()
        .ok_or("the cluster is not bootstrapped yet; retry")?;
    let fingerprint = identity::ca_fingerprint(&ca.cert_pem).map_err(|e| e.to_string())?;
    if fingerprint != token.ca_fingerprint {
        return Err("the join token belongs to another cluster".into());
    }
    let role = if req.admin_eligible {
        NodeRole::AdminEligible
    } else {
        NodeRole::Compute
    };
    let ips = [req.addr.ip()];
    let issued =
        identity::issue_for_csr(&ca, &req.name, CertKind::Node { ips: &ips }, &req.csr_pem)
            .map_err(|e| e.to_string())?;
    let actor = format!("token:{}", token.id);
    let outcome = node
        .propose(
            &actor,
            Command::Join {
                token_id: token.id.clone(),
                secret_sha256: token.secret_sha256(),
                now: skiff_cluster::unix_now(),
                name: req.name.clone(),
                addr: req.addr,
                role,
                cert_serial: issued.serial_hex.clone(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let node_id = match outcome {
        CommandOutcome::Joined { node_id } => node_id,
        CommandOutcome::Refused { message, .. } => return Err(message),
        other => return Err(format!("unexpected outcome {other:?}")),
    };
    if req.admin_eligible {
        if let Some(r) = &node.replica {
            if let Err(e) = r
                .raft
                .add_learner(
                    node_id,
                    openraft::BasicNode::new(req.addr.to_string()),
                    false,
                )
                .await
            {
                warn!(error = %e, node = %req.name, "could not add the new node as a Raft learner");
            }
        }
    }
    info!(node = %req.name, node_id, addr = %req.addr, role = role.as_str(), "node joined");
    let crl_pem = IdentityFiles::new(&node.data_dir)
        .load()
        .ok()
        .and_then(|i| i.crl_pem);
    Ok(JoinAccepted {
        cluster_id: state.cluster_id.clone(),
        node_id,
        ca_pem: ca.cert_pem.clone(),
        cert_pem: issued.cert_pem,
        crl_pem,
        seeds: vec![node.config.advertise_addr().to_string()],
    })
}

/// Accepts a server whose chain carries the CA the token pins, and is a node of that CA.
#[derive(Debug)]
struct PinnedFingerprint {
    fingerprint: String,
}

impl ServerCertVerifier for PinnedFingerprint {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| hex::encode(sha2::Sha256::digest(c.as_ref())) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the seed does not belong to the cluster this join token is for".into(),
                )
            })?;
        let verifier = tls::node_verifier_for_ca_der(vec![ca.clone().into_owned()])
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &tls::provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &tls::provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Sends a join request to `seed` and returns the leader's answer.
pub async fn request_join(
    seed: SocketAddr,
    token: &JoinToken,
    req: &JoinRequest,
) -> anyhow::Result<JoinAccepted> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedFingerprint {
            fingerprint: token.ca_fingerprint.clone(),
        }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN_JOIN.to_vec()];
    let crypto = QuicClientConfig::try_from(cfg)?;
    let bind: SocketAddr = if seed.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(bind)?;
    let exchange = async {
        let conn = endpoint
            .connect_with(quinn::ClientConfig::new(Arc::new(crypto)), seed, NODE_SAN)?
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the seed {seed}: {e}"))?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&serde_json::to_vec(req)?).await?;
        send.finish()?;
        let reply = recv.read_to_end(1 << 20).await?;
        conn.close(0u32.into(), b"done");
        anyhow::Ok(reply)
    };
    let reply = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| anyhow::anyhow!("the seed {seed} did not answer within 30 s"))??;
    endpoint.close(0u32.into(), b"done");
    let reply: JoinReply = serde_json::from_slice(&reply)
        .map_err(|e| anyhow::anyhow!("the seed sent a malformed reply: {e}"))?;
    reply.map_err(|e| anyhow::anyhow!("join refused: {e}"))
}

/// `skiffd join`: gets a certificate from the cluster and writes a ready data dir.
pub async fn join_cluster(
    data_dir: &Path,
    mut config: NodeConfig,
    seed: SocketAddr,
    token: &str,
) -> anyhow::Result<JoinAccepted> {
    let token = JoinToken::parse(token)?;
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    if data_dir.join(CONFIG_FILE).exists() {
        anyhow::bail!(
            "{} already holds a node; use another --data-dir or start it with `skiffd run`",
            data_dir.display()
        );
    }
    let kc = identity::new_key_and_csr(&config.name)?;
    let req = JoinRequest {
        token: token.to_string(),
        name: config.name.clone(),
        addr: config.advertise_addr(),
        admin_eligible: config.admin_eligible,
        csr_pem: kc.csr_pem,
    };
    let accepted = request_join(seed, &token, &req).await?;
    std::fs::create_dir_all(data_dir)?;
    IdentityFiles::new(data_dir).save(&NodeIdentity {
        ca_pem: accepted.ca_pem.clone(),
        cert_pem: accepted.cert_pem.clone(),
        key_pem: kc.key_pem,
        crl_pem: accepted.crl_pem.clone(),
    })?;
    let facts = NodeFacts {
        cluster_id: accepted.cluster_id.clone(),
        node_id: accepted.node_id,
    };
    identity::write_file(
        &NodeFacts::path(data_dir),
        &serde_json::to_string_pretty(&facts)?,
        false,
    )?;
    let mut seeds = vec![seed.to_string()];
    seeds.extend(accepted.seeds.iter().cloned());
    seeds.sort();
    seeds.dedup();
    seeds.retain(|s| *s != config.advertise_addr().to_string());
    config.seeds = seeds;
    identity::write_file(&data_dir.join(CONFIG_FILE), &config.to_toml(), false)?;
    Ok(accepted)
}
