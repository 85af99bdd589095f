//! API types and client calls for users (`/api/v1/users`), `whoami` and the audit log
//! (`/api/v1/audit`), the bearer tokens scripts use, and [`TokenClient`], a small client that
//! authenticates with such a token instead of a certificate.

use std::fmt;

use rand::Rng;
/// The HTTP method type [`TokenClient::call`] takes.
pub use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::client::{ApiClient, ClientError, CONNECT_TIMEOUT, MAX_LEADER_HOPS, REQUEST_TIMEOUT};
use super::seg;
use super::types::{ApiError, API_PREFIX};
use crate::state::{AuditRecord, Quotas, UserRecord, UserRole};

/// Audit records `GET /api/v1/audit` returns when no `limit` is given.
pub const AUDIT_DEFAULT_LIMIT: usize = 100;
/// Longest lifetime of an API token that expires (ten years); no `ttl_secs`: until revoked.
pub const TOKEN_MAX_TTL: u64 = 10 * 365 * 24 * 3600;
/// Longest CSR the API reads.
pub const CSR_MAX_LEN: usize = 16 * 1024;

/// One user as the API shows it (never secrets: token hashes are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub role: UserRole,
    pub disabled: bool,
    pub quotas: Quotas,
    /// OpenSSH one-line public keys.
    pub ssh_keys: Vec<String>,
    /// Hex serials of the user's valid certificates (credentials).
    pub credentials: Vec<String>,
    pub tokens: Vec<TokenView>,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        UserView {
            name: u.name.clone(),
            role: u.role,
            disabled: u.disabled,
            quotas: u.quotas.clone(),
            ssh_keys: u.ssh_keys.clone(),
            credentials: u.cert_serials.clone(),
            tokens: u
                .api_tokens
                .iter()
                .map(|t| TokenView {
                    id: t.id.clone(),
                    label: t.label.clone(),
                    created_at: t.created_at,
                    expires_at: t.expires_at,
                })
                .collect(),
        }
    }
}

/// An API token without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub label: String,
    pub created_at: u64,
    pub expires_at: Option<u64>,
}

/// `POST /api/v1/users` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddUserRequest {
    pub name: String,
    pub role: UserRole,
    #[serde(default)]
    pub quotas: Quotas,
}

/// `PUT /api/v1/users/{name}/role` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRoleRequest {
    pub role: UserRole,
}

/// `POST /api/v1/users/{name}/ssh-keys` and `.../ssh-keys/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshKeyRequest {
    /// An OpenSSH one-line public key; to remove, also its fingerprint (`SHA256:...`).
    pub key: String,
}

/// `POST /api/v1/users/{name}/credentials`: the leader signs a user certificate for the CSR's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    /// PKCS#10 CSR in PEM; only its public key is used.
    pub csr_pem: String,
    /// Revoke the user's other certificates.
    #[serde(default)]
    pub replace: bool,
}

/// The answer to a [`CredentialRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialResponse {
    pub user: String,
    pub cluster_id: String,
    pub serial: String,
    pub cert_pem: String,
    pub ca_pem: String,
}

/// `POST /api/v1/users/{name}/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// What the token is for (at most 64 printable characters).
    #[serde(default)]
    pub label: String,
    /// Lifetime in seconds; none: valid until revoked.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// A token just made: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub id: String,
    /// `skt_ID_SECRET`, for `Authorization: Bearer ...`.
    pub token: String,
    pub label: String,
    pub expires_at: Option<u64>,
}

/// A bearer token `skt_ID_SECRET` (both parts lowercase hex).
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skt_{}_{}", self.id, self.secret)
    }
}

impl BearerToken {
    /// A fresh token: 8 random bytes of id, 32 of secret.
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let id: [u8; 8] = rng.gen();
        let secret: [u8; 32] = rng.gen();
        BearerToken {
            id: hex::encode(id),
            secret: hex::encode(secret),
        }
    }

    /// Parses `skt_ID_SECRET`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || "malformed API token (expected skt_ID_SECRET)".to_string();
        let rest = s.trim().strip_prefix("skt_").ok_or_else(bad)?;
        let (id, secret) = rest.split_once('_').ok_or_else(bad)?;
        let hex_ok = |p: &str, n: usize| {
            p.len() == n
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !hex_ok(id, 16) || !hex_ok(secret, 64) {
            return Err(bad());
        }
        Ok(BearerToken {
            id: id.into(),
            secret: secret.into(),
        })
    }

    /// What the state keeps: SHA-256 of the secret, lowercase hex.
    pub fn secret_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }
}

/// OpenSSH's fingerprint of a one-line public key: `SHA256:` + unpadded base64 of the blob's hash.
pub fn ssh_key_fingerprint(line: &str) -> Option<String> {
    use base64::Engine;
    let blob = line.split_ascii_whitespace().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(bytes))
    ))
}

impl ApiClient {
    /// `GET /api/v1/whoami`: the caller's own user.
    pub async fn whoami(&self) -> Result<UserView, ClientError> {
        self.call::<(), _>(Method::GET, "/whoami", None).await
    }

    /// `GET /api/v1/users`: every user (admin), or only oneself.
    pub async fn users(&self) -> Result<Vec<UserView>, ClientError> {
        self.call::<(), _>(Method::GET, "/users", None).await
    }

    /// `GET /api/v1/users/{name}`.
    pub async fn user(&self, name: &str) -> Result<UserView, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/users/{}", seg(name)), None)
            .await
    }

    /// `POST /api/v1/users` (admin).
    pub async fn add_user(
        &self,
        name: &str,
        role: UserRole,
        quotas: Quotas,
    ) -> Result<UserView, ClientError> {
        let body = AddUserRequest {
            name: name.into(),
            role,
            quotas,
        };
        self.call(Method::POST, "/users", Some(&body)).await
    }

    /// `DELETE /api/v1/users/{name}` (admin): removes the user and revokes their certificates.
    pub async fn remove_user(&self, name: &str) -> Result<UserView, ClientError> {
        self.call::<(), _>(Method::DELETE, &format!("/users/{}", seg(name)), None)
            .await
    }

    /// `POST /api/v1/users/{name}/disable` or `/enable` (admin).
    pub async fn set_user_disabled(
        &self,
        name: &str,
        disabled: bool,
    ) -> Result<UserView, ClientError> {
        let what = if disabled { "disable" } else { "enable" };
        let path = format!("/users/{}/{what}", seg(name));
        self.call::<(), _>(Method::POST, &path, None).await
    }

    /// `PUT /api/v1/users/{name}/role` (admin).
    pub async fn set_user_role(&self, name: &str, role: UserRole) -> Result<UserView, ClientError> {
        let path = format!("/users/{}/role", seg(name));
        self.call(Method::PUT, &path, Some(&SetRoleRequest { role }))
            .await
    }

    /// `PUT /api/v1/users/{name}/quotas` (admin): replaces all four quotas.
    pub async fn set_user_quotas(
        &self,
        name: &str,
        quotas: &Quotas,
    ) -> Result<UserView, ClientError> {
        let path = format!("/users/{}/quotas", seg(name));
        self.call(Method::PUT, &path, Some(quotas)).await
    }

    /// `POST /api/v1/users/{name}/ssh-keys`.
    pub async fn add_ssh_key(&self, name: &str, key: &str) -> Result<UserView, ClientError> {
        let path = format!("/users/{}/ssh-keys", seg(name));
        self.call(
            Method::POST,
            &path,
            Some(&SshKeyRequest { key: key.into() }),
        )
        .await
    }

    /// `POST /api/v1/users/{name}/ssh-keys/remove`: `key` is the key line or its fingerprint.
    pub async fn remove_ssh_key(&self, name: &str, key: &str) -> Result<UserView, ClientError> {
        let path = format!("/users/{}/ssh-keys/remove", seg(name));
        self.call(
            Method::POST,
            &path,
            Some(&SshKeyRequest { key: key.into() }),
        )
        .await
    }

    /// `POST /api/v1/users/{name}/credentials`: a certificate for the CSR's key.
    pub async fn issue_credential(
        &self,
        name: &str,
        csr_pem: &str,
        replace: bool,
    ) -> Result<CredentialResponse, ClientError> {
        let path = format!("/users/{}/credentials", seg(name));
        let body = CredentialRequest {
            csr_pem: csr_pem.into(),
            replace,
        };
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `GET /api/v1/users/{name}/tokens`.
    pub async fn tokens(&self, name: &str) -> Result<Vec<TokenView>, ClientError> {
        let path = format!("/users/{}/tokens", seg(name));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `POST /api/v1/users/{name}/tokens`: the answer holds the secret, shown only this once.
    pub async fn create_api_token(
        &self,
        name: &str,
        label: &str,
        ttl_secs: Option<u64>,
    ) -> Result<CreatedToken, ClientError> {
        let path = format!("/users/{}/tokens", seg(name));
        let body = CreateTokenRequest {
            label: label.into(),
            ttl_secs,
        };
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `DELETE /api/v1/users/{name}/tokens/{id}`.
    pub async fn revoke_api_token(&self, name: &str, id: &str) -> Result<TokenView, ClientError> {
        let path = format!("/users/{}/tokens/{}", seg(name), seg(id));
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    /// `GET /api/v1/audit?limit=N` (admin): the newest writes, oldest first.
    pub async fn audit(&self, limit: Option<usize>) -> Result<Vec<AuditRecord>, ClientError> {
        let path = match limit {
            Some(n) => format!("/audit?limit={n}"),
            None => "/audit".into(),
        };
        self.call::<(), _>(Method::GET, &path, None).await
    }
}

/// A client for scripts that authenticates with a bearer token (no client certificate): it trusts
/// only nodes of the given CA and follows a follower's pointer to the leader.
pub struct TokenClient {
    http: reqwest::Client,
    endpoints: Vec<String>,
    token: String,
}

impl fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClient")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl TokenClient {
    pub fn new(endpoints: Vec<String>, ca_pem: &str, token: &str) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let verifier = crate::tls::node_verifier_for_ca(ca_pem)?;
        let mut tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(TokenClient {
            http,
            endpoints,
            token: token.into(),
        })
    }

    /// Sends one request (`path` relative to `/api/v1`) to the first endpoint, following the
    /// leader at most [`MAX_LEADER_HOPS`] times.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut addr = self.endpoints[0].clone();
        for _ in 0..=MAX_LEADER_HOPS {
            let mut req = self
                .http
                .request(method.clone(), format!("https://{addr}{API_PREFIX}{path}"))
                .bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| ClientError::Unreachable {
                endpoints: vec![addr.clone()],
                detail: e.to_string(),
            })?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| ClientError::Unreachable {
                endpoints: vec![addr.clone()],
                detail: e.to_string(),
            })?;
            if status.is_success() {
                return serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                    endpoint: addr.clone(),
                    message: e.to_string(),
                });
            }
            let err: ApiError = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                ApiError::new(
                    format!("http_{}", status.as_u16()),
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(200)
                        .collect::<String>(),
                )
            });
            match err.leader.clone().filter(|l| *l != addr) {
                Some(leader) if err.code == ApiError::NOT_LEADER => addr = leader,
                _ => {
                    return Err(ClientError::Api {
                        status: status.as_u16(),
                        code: err.code,
                        message: err.message,
                    })
                }
            }
        }
        Err(ClientError::LeaderLoop {
            hops: MAX_LEADER_HOPS,
            last: addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_parse_and_print() {
        let t = BearerToken::generate();
        let s = t.to_string();
        assert!(s.starts_with("skt_"));
        assert_eq!(BearerToken::parse(&s).unwrap(), t);
        assert!(!format!("{t:?}").contains(&t.secret));
        assert_eq!(t.secret_sha256().len(), 64);
        for bad in [
            "",
            "skt_",
            "skt_abc_def",
            "xyz_0123456789abcdef_00",
            &s.to_uppercase(),
            &format!("{s}0"),
            &s.replacen("skt_", "skt__", 1),
        ] {
            assert!(BearerToken::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fingerprint_matches_openssh() {
        // What `ssh-keygen -lf` prints for this key.
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x";
        assert_eq!(
            ssh_key_fingerprint(key).unwrap(),
            "SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU"
        );
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        assert!(serde_json::from_str::<AddUserRequest>(
            r#"{"name":"a","role":"user","admin":true}"#
        )
        .is_err());
        let r: AddUserRequest = serde_json::from_str(r#"{"name":"a","role":"read-only"}"#).unwrap();
        assert_eq!(r.role, UserRole::ReadOnly);
        assert!(serde_json::from_str::<Quotas>(r#"{"memory":1}"#).is_err());
    }
}
