//! The user credential file `skiff` authenticates with: the cluster CA, the user's certificate and
//! key, and where to reach the cluster.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where `skiff` looks for a credential when neither `--cred` nor `SKIFF_CRED` says.
pub const DEFAULT_RELATIVE_PATH: &str = ".config/skiff/credential";

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "no credential: pass --cred FILE, set SKIFF_CRED, or create ~/{DEFAULT_RELATIVE_PATH}"
    )]
    NotFound,
    #[error("cannot read credential {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("credential {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub cluster_id: String,
    pub user: String,
    /// API addresses (`HOST:PORT`) to try, in order.
    pub endpoints: Vec<String>,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Credential {
    pub fn load(path: &Path) -> Result<Self, CredentialError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cred: Credential = toml::from_str(&text).map_err(|e| CredentialError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if cred.endpoints.is_empty() {
            return Err(CredentialError::Invalid {
                path: path.to_path_buf(),
                message: "endpoints is empty".into(),
            });
        }
        Ok(cred)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The credential path to use: `explicit` (`--cred`), then `$SKIFF_CRED`, then
    /// `~/.config/skiff/credential`.
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, CredentialError> {
        if let Some(p) = explicit {
            return Ok(p.to_path_buf());
        }
        if let Some(p) = std::env::var_os("SKIFF_CRED").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        let home = std::env::var_os("HOME").ok_or(CredentialError::NotFound)?;
        let p = PathBuf::from(home).join(DEFAULT_RELATIVE_PATH);
        if p.exists() {
            Ok(p)
        } else {
            Err(CredentialError::NotFound)
        }
    }
}
