//! Node and user identity: the cluster CA, the certificates it issues, revocation lists, and the
//! files a node keeps them in under its data dir.
//!
//! Certificates carry their kind in the subject common name: `node:NAME` for nodes (which also carry
//! the DNS name [`NODE_SAN`], the name every node-to-node TLS check verifies) and `user:NAME` for API
//! users (client authentication only).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::state::CaMaterial;

/// The DNS name in every node certificate; nodes verify each other against it.
pub const NODE_SAN: &str = "node.skiff";

/// How long a node or user certificate is valid.
pub const CERT_VALIDITY_DAYS: i64 = 5 * 365;
/// How long the cluster CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 20 * 365;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// certificate or key generation failed
    #[error("certificate error: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid name {0:?}: use 1 to 63 characters a-z, 0-9 and '-', starting with a letter or digit")]
    InvalidName(String),
    #[error("the certificate signing request is invalid: {0}")]
    BadCsr(String),
    #[error("{0}")]
    Parse(String),
}

/// Checks a node or user name: DNS-label-like, so it is safe in certificates, file names and URLs.
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidName(name.to_string()))
    }
}

/// A certificate the CA issued, with its serial number in lowercase hex.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub serial_hex: String,
}

/// A fresh private key and a CSR for it.
pub struct KeyAndCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

fn random_serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    if bytes[0] == 0 {
        bytes[0] = 0x01; // minimal DER encoding keeps the same bytes
    }
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

/// Creates a new cluster CA.
pub fn new_ca(cluster_id: &str) -> Result<CaMaterial, IdentityError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Skiff cluster CA {cluster_id}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial().0);
    validity(&mut params, CA_VALIDITY_DAYS);
    let cert = params.self_signed(&key)?;
    Ok(CaMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn issuer(ca: &CaMaterial) -> Result<Issuer<'static, KeyPair>, IdentityError> {
    let key = KeyPair::from_pem(&ca.key_pem)?;
    Ok(Issuer::from_ca_cert_pem(&ca.cert_pem, key)?)
}

/// Makes a private key and a CSR (the CA ignores the CSR's names; it only takes the public key).
pub fn new_key_and_csr(name: &str) -> Result<KeyAndCsr, IdentityError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("node:{name}"));
    let csr = params.serialize_request(&key)?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem()?,
    })
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug)]
pub enum CertKind<'a> {
    /// A node: server and client authentication, with the node SAN and its IP addresses.
    Node { ips: &'a [IpAddr] },
    /// An API user: client authentication only.
    User,
}

fn leaf_params(
    name: &str,
    kind: CertKind<'_>,
    days: i64,
) -> Result<(CertificateParams, String), IdentityError> {
    validate_name(name)?;
    let mut params = CertificateParams::default();
    let (serial, serial_hex) = random_serial();
    params.serial_number = Some(serial);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, days);
    match kind {
        CertKind::Node { ips } => {
            params
                .distinguished_name
                .push(DnType::CommonName, format!("node:{name}"));
            params.subject_alt_names = vec![SanType::DnsName(NODE_SAN.try_into()?)];
            for ip in ips.iter().filter(|ip| !ip.is_unspecified()) {
                params.subject_alt_names.push(SanType::IpAddress(*ip));
            }
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
        }
        CertKind::User => {
            params
                .distinguished_name
                .push(DnType::CommonName, format!("user:{name}"));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
    }
    Ok((params, serial_hex))
}

/// Issues a certificate for a key the caller holds (`key_pem`).
pub fn issue_for_key(
    ca: &CaMaterial,
    name: &str,
    kind: CertKind<'_>,
    key_pem: &str,
) -> Result<IssuedCert, IdentityError> {
    let key = KeyPair::from_pem(key_pem)?;
    let (params, serial_hex) = leaf_params(name, kind, CERT_VALIDITY_DAYS)?;
    let cert = params.signed_by(&key, &issuer(ca)?)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        serial_hex,
    })
}

/// Issues a certificate for the public key in a CSR; the CSR's own names are ignored.
pub fn issue_for_csr(
    ca: &CaMaterial,
    name: &str,
    kind: CertKind<'_>,
    csr_pem: &str,
) -> Result<IssuedCert, IdentityError> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| IdentityError::BadCsr(e.to_string()))?;
    let (params, serial_hex) = leaf_params(name, kind, CERT_VALIDITY_DAYS)?;
    let signed = CertificateSigningRequestParams {
        params,
        public_key: csr.public_key,
    }
    .signed_by(&issuer(ca)?)?;
    Ok(IssuedCert {
        cert_pem: signed.pem(),
        serial_hex,
    })
}

/// Issues a certificate that expired a day ago (tests prove expired peers are refused).
pub fn issue_expired_for_key(
    ca: &CaMaterial,
    name: &str,
    kind: CertKind<'_>,
    key_pem: &str,
) -> Result<IssuedCert, IdentityError> {
    let key = KeyPair::from_pem(key_pem)?;
    let (mut params, serial_hex) = leaf_params(name, kind, 1)?;
    params.not_before = OffsetDateTime::now_utc() - Duration::days(10);
    params.not_after = OffsetDateTime::now_utc() - Duration::days(1);
    let cert = params.signed_by(&key, &issuer(ca)?)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        serial_hex,
    })
}

/// A new private key in PEM.
pub fn new_key_pem() -> Result<String, IdentityError> {
    Ok(KeyPair::generate()?.serialize_pem())
}

/// Signs a CRL listing `revoked` (hex serial, revocation time in Unix seconds).
pub fn sign_crl(
    ca: &CaMaterial,
    crl_number: u64,
    revoked: &[(String, u64)],
) -> Result<String, IdentityError> {
    let now = OffsetDateTime::now_utc();
    let mut revoked_certs = Vec::with_capacity(revoked.len());
    for (serial_hex, at) in revoked {
        let bytes = hex::decode(serial_hex)
            .map_err(|e| IdentityError::Parse(format!("bad serial {serial_hex}: {e}")))?;
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&bytes),
            revocation_time: OffsetDateTime::from_unix_timestamp(*at as i64).unwrap_or(now),
            reason_code: None,
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: now - Duration::hours(1),
        next_update: now + Duration::days(CA_VALIDITY_DAYS),
        crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(&issuer(ca)?)?.pem()?)
}

/// SHA-256 of the CA certificate's DER, in hex: pinned by join tokens.
pub fn ca_fingerprint(ca_cert_pem: &str) -> Result<String, IdentityError> {
    use sha2::Digest;
    let der = first_cert_der(ca_cert_pem)?;
    Ok(hex::encode(sha2::Sha256::digest(&der)))
}

/// The DER of the first certificate in a PEM text.
pub fn first_cert_der(pem: &str) -> Result<Vec<u8>, IdentityError> {
    let mut reader = pem.as_bytes();
    let first = rustls_pemfile::certs(&mut reader).next();
    match first {
        Some(Ok(der)) => Ok(der.to_vec()),
        Some(Err(e)) => Err(IdentityError::Parse(format!("bad certificate PEM: {e}"))),
        None => Err(IdentityError::Parse("no certificate in PEM text".into())),
    }
}

/// The files of a node's identity under `DATA_DIR/identity/`.
#[derive(Clone, Debug)]
pub struct IdentityFiles {
    pub dir: PathBuf,
}

/// A node's identity as loaded from disk.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The newest CRL this node has seen, if any.
    pub crl_pem: Option<String>,
}

impl IdentityFiles {
    pub fn new(data_dir: &Path) -> Self {
        IdentityFiles {
            dir: data_dir.join("identity"),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn exists(&self) -> bool {
        self.path("node.pem").exists()
    }

    pub fn save(&self, id: &NodeIdentity) -> Result<(), IdentityError> {
        fs::create_dir_all(&self.dir).map_err(|source| IdentityError::Io {
            path: self.dir.clone(),
            source,
        })?;
        write_file(&self.path("ca.pem"), &id.ca_pem, false)?;
        write_file(&self.path("node.pem"), &id.cert_pem, false)?;
        write_file(&self.path("node.key"), &id.key_pem, true)?;
        if let Some(crl) = &id.crl_pem {
            write_file(&self.path("crl.pem"), crl, false)?;
        }
        Ok(())
    }

    pub fn save_crl(&self, crl_pem: &str) -> Result<(), IdentityError> {
        write_file(&self.path("crl.pem"), crl_pem, false)
    }

    pub fn load(&self) -> Result<NodeIdentity, IdentityError> {
        let read = |f: &str| {
            let p = self.path(f);
            fs::read_to_string(&p).map_err(|source| IdentityError::Io { path: p, source })
        };
        Ok(NodeIdentity {
            ca_pem: read("ca.pem")?,
            cert_pem: read("node.pem")?,
            key_pem: read("node.key")?,
            crl_pem: read("crl.pem").ok(),
        })
    }
}

/// Writes a file atomically (temp file + rename), 0600 when `secret`.
pub fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if secret { 0o600 } else { 0o644 });
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(contents.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("node-1").is_ok());
        for bad in ["", "-a", "A", "a b", "a/b", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ca_issues_node_and_user_certs_and_crl() {
        let ca = new_ca("c1").unwrap();
        let kc = new_key_and_csr("n1").unwrap();
        let ips = ["127.0.0.1".parse().unwrap()];
        let node = issue_for_csr(&ca, "n1", CertKind::Node { ips: &ips }, &kc.csr_pem).unwrap();
        assert_eq!(node.serial_hex.len(), 32);
        let user = issue_for_key(&ca, "admin", CertKind::User, &new_key_pem().unwrap()).unwrap();
        assert_ne!(node.serial_hex, user.serial_hex);
        let crl = sign_crl(&ca, 1, &[(node.serial_hex.clone(), 1)]).unwrap();
        assert!(crl.contains("BEGIN X509 CRL"));
        assert_eq!(ca_fingerprint(&ca.cert_pem).unwrap().len(), 64);
        assert!(issue_for_csr(&ca, "n1", CertKind::User, "garbage").is_err());
    }
}
