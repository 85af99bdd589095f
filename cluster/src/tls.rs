//! TLS for everything Skiff sends: node-to-node QUIC (mutual TLS 1.3) and the HTTPS control API.
//!
//! Every peer is verified against the cluster CA and the newest CRL this node has. The CRL is
//! swappable at run time ([`TlsContext::install_crl`]) without rebuilding endpoints: the verifiers
//! here delegate to rustls' WebPKI verifiers rebuilt on each new CRL. Refusals are logged.
//! One crypto provider in the whole build: *ring*.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use tracing::{info, warn};

use crate::credential::Credential;
use crate::identity::{NodeIdentity, NODE_SAN};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid PEM in {what}: {detail}")]
    Pem { what: &'static str, detail: String },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS verifier setup failed: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("the CRL is not signed by this cluster's CA or is malformed: {0}")]
    BadCrl(String),
}

/// The crypto provider every TLS config in Skiff uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Who is on the other side of a verified connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub subject: Subject,
    pub serial_hex: String,
}

/// The kind and name in a certificate's common name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Node(String),
    User(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Node(n) => write!(f, "node:{n}"),
            Subject::User(n) => write!(f, "user:{n}"),
        }
    }
}

/// Reads the identity out of a certificate the TLS layer already verified.
pub fn peer_identity(cert: &CertificateDer<'_>) -> Option<PeerIdentity> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?;
    let subject = if let Some(n) = cn.strip_prefix("node:") {
        Subject::Node(n.to_string())
    } else if let Some(n) = cn.strip_prefix("user:") {
        Subject::User(n.to_string())
    } else {
        return None;
    };
    Some(PeerIdentity {
        subject,
        serial_hex: hex::encode(parsed.tbs_certificate.raw_serial()),
    })
}

fn subject_of(cert: &CertificateDer<'_>) -> String {
    peer_identity(cert)
        .map(|p| format!("{} (serial {})", p.subject, p.serial_hex))
        .unwrap_or_else(|| "an unknown subject".to_string())
}

pub(crate) fn certs_from_pem(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut reader = pem.as_bytes();
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            detail: "no certificate".into(),
        });
    }
    Ok(certs)
}

pub(crate) fn key_from_pem(
    pem: &str,
    what: &'static str,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut reader = pem.as_bytes();
    rustls_pemfile::private_key(&mut reader)
        .map_err(|e| TlsError::Pem {
            what,
            detail: e.to_string(),
        })?
        .ok_or(TlsError::Pem {
            what,
            detail: "no private key".into(),
        })
}

fn crl_from_pem(pem: &str) -> Result<CertificateRevocationListDer<'static>, TlsError> {
    let mut reader = pem.as_bytes();
    for item in rustls_pemfile::read_all(&mut reader) {
        if let Ok(rustls_pemfile::Item::Crl(der)) = item {
            return Ok(der);
        }
    }
    Err(TlsError::BadCrl("no X509 CRL in PEM text".into()))
}

/// The CRL number and the revoked serials (hex) of a CRL, which must name `ca` as its issuer.
fn crl_contents(der: &[u8], ca: &CertificateDer<'_>) -> Result<(u64, HashSet<String>), TlsError> {
    let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| TlsError::BadCrl(e.to_string()))?;
    let (_, ca) = x509_parser::parse_x509_certificate(ca.as_ref())
        .map_err(|e| TlsError::BadCrl(e.to_string()))?;
    if crl.issuer().as_raw() != ca.subject().as_raw() {
        return Err(TlsError::BadCrl(format!(
            "issued by {}, not by {}",
            crl.issuer(),
            ca.subject()
        )));
    }
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0);
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect();
    Ok((number, serials))
}

struct Verifiers {
    client: Arc<dyn ClientCertVerifier>,
    server: Arc<dyn ServerCertVerifier>,
    crl_number: u64,
    revoked: HashSet<String>,
}

/// A client and a server certificate verifier built from the same roots and CRL.
type VerifierPair = (Arc<dyn ClientCertVerifier>, Arc<dyn ServerCertVerifier>);

fn build_verifiers(
    roots: &Arc<RootCertStore>,
    crl: Option<&CertificateRevocationListDer<'static>>,
) -> Result<VerifierPair, TlsError> {
    let mut client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .allow_unauthenticated()
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status();
    let mut server =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    if let Some(crl) = crl {
        client = client.with_crls([crl.clone()]);
        server = server.with_crls([crl.clone()]);
    }
    Ok((client.build()?, server.build()?))
}

/// The cluster CA, this node's certificate, and the current CRL: everything TLS needs.
pub struct TlsContext {
    roots: Arc<RootCertStore>,
    ca_der: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    verifiers: RwLock<Verifiers>,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext").finish_non_exhaustive()
    }
}

impl TlsContext {
    /// Builds the context from a node's identity (CA, certificate, key, optional CRL).
    pub fn new(id: &NodeIdentity) -> Result<Arc<Self>, TlsError> {
        let ca = certs_from_pem(&id.ca_pem, "the CA certificate")?;
        let ca_der = ca[0].clone();
        let mut roots = RootCertStore::empty();
        roots.add(ca_der.clone())?;
        let roots = Arc::new(roots);
        // The CA goes with our certificate so a joining node can check it against the
        // fingerprint in its token before it sends the token's secret.
        let mut chain = certs_from_pem(&id.cert_pem, "the node certificate")?;
        chain.truncate(1);
        chain.push(ca_der.clone());
        let key = key_from_pem(&id.key_pem, "the node key")?;
        let (client, server) = build_verifiers(&roots, None)?;
        let ctx = Arc::new(TlsContext {
            roots,
            ca_der,
            chain,
            key,
            verifiers: RwLock::new(Verifiers {
                client,
                server,
                crl_number: 0,
                revoked: HashSet::new(),
            }),
        });
        if let Some(crl) = &id.crl_pem {
            ctx.install_crl(crl)?;
        }
        Ok(ctx)
    }

    /// This node's own certificate.
    pub fn own_cert(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The number of the CRL in force (0: none).
    pub fn crl_number(&self) -> u64 {
        self.verifiers.read().map(|v| v.crl_number).unwrap_or(0)
    }

    /// Whether a certificate serial is revoked by the CRL in force.
    pub fn is_revoked(&self, serial_hex: &str) -> bool {
        self.verifiers
            .read()
            .map(|v| v.revoked.contains(serial_hex))
            .unwrap_or(false)
    }

    /// Installs a CRL if it is signed by the cluster CA and newer than the one in force.
    /// Returns `Ok(true)` when it was installed. A forged CRL is refused, so anyone who can
    /// reach the gossip cannot revoke certificates.
    pub fn install_crl(&self, pem: &str) -> Result<bool, TlsError> {
        let der = crl_from_pem(pem)?;
        let (number, revoked) = crl_contents(der.as_ref(), &self.ca_der)?;
        if number <= self.crl_number() {
            return Ok(false);
        }
        let (client, server) = build_verifiers(&self.roots, Some(&der))?;
        // Prove the CRL's signature: verifying our own certificate with it either succeeds or
        // says "revoked"; any other error means the CRL is not our CA's.
        match server.verify_server_cert(
            self.own_cert(),
            &[],
            &ServerName::try_from(NODE_SAN).map_err(|e| TlsError::BadCrl(e.to_string()))?,
            &[],
            UnixTime::now(),
        ) {
            Ok(_) | Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)) => {}
            Err(e) => return Err(TlsError::BadCrl(e.to_string())),
        }
        let mut v = self
            .verifiers
            .write()
            .map_err(|_| TlsError::BadCrl("verifier lock poisoned".into()))?;
        if number <= v.crl_number {
            return Ok(false);
        }
        info!(
            crl_number = number,
            revoked = revoked.len(),
            "installed new CRL"
        );
        *v = Verifiers {
            client,
            server,
            crl_number: number,
            revoked,
        };
        Ok(true)
    }

    fn client_verifier(self: &Arc<Self>) -> Arc<dyn ClientCertVerifier> {
        Arc::new(DynClientVerifier(self.clone()))
    }

    fn server_verifier(self: &Arc<Self>) -> Arc<dyn ServerCertVerifier> {
        Arc::new(NodeServerVerifier(self.clone()))
    }

    /// rustls server config for node-to-node QUIC: TLS 1.3, the given ALPNs, client certificates
    /// requested and verified (anonymous clients are allowed at the TLS level only so that a
    /// joining node can reach the join protocol; every other protocol checks the identity).
    pub fn quic_server_config(
        self: &Arc<Self>,
        alpns: &[&[u8]],
    ) -> Result<rustls::ServerConfig, TlsError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(self.client_verifier())
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
        Ok(cfg)
    }

    /// rustls client config for node-to-node QUIC: presents this node's certificate, accepts only
    /// node certificates of the cluster CA.
    pub fn quic_client_config(
        self: &Arc<Self>,
        alpn: &[u8],
    ) -> Result<rustls::ClientConfig, TlsError> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(self.server_verifier())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![alpn.to_vec()];
        Ok(cfg)
    }

    /// rustls server config for the HTTPS control API (TLS 1.2/1.3, h2 and http/1.1).
    pub fn api_server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(self.client_verifier())
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

#[derive(Debug)]
struct DynClientVerifier(Arc<TlsContext>);

impl DynClientVerifier {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        match self.0.verifiers.read() {
            Ok(v) => v.client.clone(),
            Err(p) => p.into_inner().client.clone(),
        }
    }
}

impl ClientCertVerifier for DynClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let res = self
            .current()
            .verify_client_cert(end_entity, intermediates, now);
        if let Err(e) = &res {
            warn!(peer = %subject_of(end_entity), error = %e, "refused a client certificate");
        }
        res
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// Where a node-checking server verifier gets the WebPKI verifier it delegates to.
trait VerifierSource: fmt::Debug + Send + Sync {
    fn current(&self) -> Arc<dyn ServerCertVerifier>;
}

/// The verifier in force in a [`TlsContext`] (it changes with each new CRL).
impl VerifierSource for Arc<TlsContext> {
    fn current(&self) -> Arc<dyn ServerCertVerifier> {
        match self.verifiers.read() {
            Ok(v) => v.server.clone(),
            Err(p) => p.into_inner().server.clone(),
        }
    }
}

/// A fixed verifier (API clients: the CA from the credential).
impl VerifierSource for Arc<dyn ServerCertVerifier> {
    fn current(&self) -> Arc<dyn ServerCertVerifier> {
        self.clone()
    }
}

fn node_server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls::pki_types::DnsName::try_from(NODE_SAN)
            .expect("NODE_SAN is a valid DNS name")
            .to_owned(),
    )
}

/// Verifies a server as "a node of this cluster", whatever host name or address was dialled:
/// nodes are reached by IP, and every node certificate carries [`NODE_SAN`]. Refusals are logged.
#[derive(Debug)]
struct NodeServerVerifier<S>(S);

impl<S: VerifierSource> ServerCertVerifier for NodeServerVerifier<S> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let res = self.0.current().verify_server_cert(
            end_entity,
            intermediates,
            &node_server_name(),
            ocsp_response,
            now,
        );
        if let Err(e) = &res {
            warn!(peer = %subject_of(end_entity), error = %e, "refused a server certificate");
        }
        res
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().supported_verify_schemes()
    }
}

/// A server verifier that accepts a node of the CA in `ca_pem`, whatever name was dialled.
pub fn node_verifier_for_ca(ca_pem: &str) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    node_verifier_for_ca_der(certs_from_pem(ca_pem, "the CA certificate")?)
}

/// [`node_verifier_for_ca`] for CA certificates in DER.
pub fn node_verifier_for_ca_der(
    cas: Vec<CertificateDer<'static>>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in cas {
        roots.add(c)?;
    }
    let inner: Arc<dyn ServerCertVerifier> =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()?;
    Ok(Arc::new(NodeServerVerifier(inner)))
}

/// rustls client config for the control API: mutual TLS with the user's certificate; the server
/// must be a node of the cluster CA (the URL's host name is not checked: nodes are addressed by IP).
pub fn api_client_config(cred: &Credential) -> Result<rustls::ClientConfig, TlsError> {
    let verifier = node_verifier_for_ca(&cred.ca_pem)?;
    let chain = certs_from_pem(&cred.cert_pem, "the credential's certificate")?;
    let key = key_from_pem(&cred.key_pem, "the credential's key")?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{self, CertKind};

    fn node_identity(ca: &crate::state::CaMaterial, name: &str) -> NodeIdentity {
        let key = identity::new_key_pem().unwrap();
        let ips = ["127.0.0.1".parse().unwrap()];
        let cert = identity::issue_for_key(ca, name, CertKind::Node { ips: &ips }, &key).unwrap();
        NodeIdentity {
            ca_pem: ca.cert_pem.clone(),
            cert_pem: cert.cert_pem,
            key_pem: key,
            crl_pem: None,
        }
    }

    #[test]
    fn crl_from_own_ca_installs_forged_one_does_not() {
        let ca = identity::new_ca("c").unwrap();
        let other = identity::new_ca("x").unwrap();
        let id = node_identity(&ca, "a");
        let ctx = TlsContext::new(&id).unwrap();
        let forged = identity::sign_crl(&other, 5, &[("0102".into(), 1)]).unwrap();
        assert!(ctx.install_crl(&forged).is_err());
        // Same issuer name, other key: the signature check catches it.
        let same_name = identity::new_ca("c").unwrap();
        let forged = identity::sign_crl(&same_name, 5, &[("0102".into(), 1)]).unwrap();
        assert!(ctx.install_crl(&forged).is_err());
        assert_eq!(ctx.crl_number(), 0);
        let good = identity::sign_crl(&ca, 2, &[("0102".into(), 1)]).unwrap();
        assert!(ctx.install_crl(&good).unwrap());
        assert!(ctx.is_revoked("0102"));
        let older = identity::sign_crl(&ca, 1, &[]).unwrap();
        assert!(!ctx.install_crl(&older).unwrap());
        assert!(ctx.install_crl("garbage").is_err());
    }

    #[test]
    fn peer_identity_reads_subject_and_serial() {
        let ca = identity::new_ca("c").unwrap();
        let key = identity::new_key_pem().unwrap();
        let cert = identity::issue_for_key(&ca, "alice", CertKind::User, &key).unwrap();
        let der = certs_from_pem(&cert.cert_pem, "t").unwrap();
        let p = peer_identity(&der[0]).unwrap();
        assert_eq!(p.subject, Subject::User("alice".into()));
        assert_eq!(p.serial_hex, cert.serial_hex);
    }
}
