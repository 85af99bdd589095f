//! `skiffd init`: a new cluster in a data dir — cluster id, CA, this node's certificate, the first
//! admin's credential, and the bootstrap command the node commits on its first start.

use std::path::{Path, PathBuf};

use skiff_cluster::config::{NodeConfig, NodeFacts};
use skiff_cluster::credential::Credential;
use skiff_cluster::identity::{self, CertKind, IdentityFiles, NodeIdentity};
use skiff_cluster::state::{Command, NodeRecord, NodeRole, UserRecord, UserRole};

use crate::agent::{BOOTSTRAP_FILE, CONFIG_FILE};

/// The name of the first admin user.
pub const ADMIN_USER: &str = "admin";
/// The admin credential's file name in the data dir.
pub const ADMIN_CREDENTIAL: &str = "admin.credential";

/// What `init` made.
#[derive(Clone, Debug)]
pub struct Initialised {
    pub cluster_id: String,
    pub credential_path: PathBuf,
    pub credential: Credential,
}

/// Initialises a new cluster whose first node is described by `config`.
pub fn init_cluster(data_dir: &Path, mut config: NodeConfig) -> anyhow::Result<Initialised> {
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    if data_dir.join(CONFIG_FILE).exists() {
        anyhow::bail!(
            "{} is already initialised; start it with `skiffd run --data-dir {}`",
            data_dir.display(),
            data_dir.display()
        );
    }
    // The first node leads, so it must be able to.
    config.admin_eligible = true;
    std::fs::create_dir_all(data_dir)?;
    let cluster_id = hex::encode(rand::random::<[u8; 8]>());
    let ca = identity::new_ca(&cluster_id)?;
    let advertise = config.advertise_addr();
    let node_key = identity::new_key_pem()?;
    let ips = [advertise.ip()];
    let node_cert =
        identity::issue_for_key(&ca, &config.name, CertKind::Node { ips: &ips }, &node_key)?;
    let admin_key = identity::new_key_pem()?;
    let admin_cert = identity::issue_for_key(&ca, ADMIN_USER, CertKind::User, &admin_key)?;

    IdentityFiles::new(data_dir).save(&NodeIdentity {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: node_cert.cert_pem.clone(),
        key_pem: node_key,
        crl_pem: None,
    })?;
    let bootstrap = Command::Bootstrap {
        cluster_id: cluster_id.clone(),
        ca: ca.clone(),
        node: NodeRecord {
            id: 1,
            name: config.name.clone(),
            addr: advertise,
            role: NodeRole::AdminEligible,
            cert_serial: node_cert.serial_hex,
            joined_at: skiff_cluster::unix_now(),
        },
        admin: UserRecord {
            name: ADMIN_USER.into(),
            role: UserRole::Admin,
            cert_serials: vec![admin_cert.serial_hex],
            disabled: false,
            quotas: Default::default(),
            ssh_keys: Vec::new(),
            api_tokens: Vec::new(),
        },
    };
    identity::write_file(
        &data_dir.join(BOOTSTRAP_FILE),
        &serde_json::to_string_pretty(&bootstrap)?,
        true,
    )?;
    let facts = NodeFacts {
        cluster_id: cluster_id.clone(),
        node_id: 1,
    };
    identity::write_file(
        &NodeFacts::path(data_dir),
        &serde_json::to_string_pretty(&facts)?,
        false,
    )?;
    let credential = Credential {
        cluster_id: cluster_id.clone(),
        user: ADMIN_USER.into(),
        endpoints: vec![advertise.to_string()],
        ca_pem: ca.cert_pem,
        cert_pem: admin_cert.cert_pem,
        key_pem: admin_key,
    };
    let credential_path = data_dir.join(ADMIN_CREDENTIAL);
    identity::write_file(&credential_path, &credential.to_toml(), true)?;
    // The config goes last: its presence marks a complete data dir.
    identity::write_file(&data_dir.join(CONFIG_FILE), &config.to_toml(), false)?;
    Ok(Initialised {
        cluster_id,
        credential_path,
        credential,
    })
}
