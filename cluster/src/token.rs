//! Join tokens: `skiff1.ID.SECRET.CAFINGERPRINT`.
//!
//! The id finds the token in the replicated state, the secret proves the holder got it from an
//! admin (only its SHA-256 is stored), and the CA fingerprint lets the joining node check that the
//! seed it dials belongs to the cluster it means to join (as kubeadm's discovery hash does).

use sha2::{Digest, Sha256};

const PREFIX: &str = "skiff1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    pub id: String,
    pub secret: String,
    pub ca_fingerprint: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed join token: {0} (expected skiff1.ID.SECRET.CAFINGERPRINT as printed by `skiff node token`)")]
pub struct TokenParseError(&'static str);

impl JoinToken {
    /// A fresh token for the CA with this fingerprint.
    pub fn generate(ca_fingerprint: &str) -> Self {
        let id: [u8; 6] = rand::random();
        let secret: [u8; 24] = rand::random();
        JoinToken {
            id: hex::encode(id),
            secret: hex::encode(secret),
            ca_fingerprint: ca_fingerprint.to_string(),
        }
    }

    pub fn secret_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }

    pub fn parse(s: &str) -> Result<Self, TokenParseError> {
        let mut parts = s.trim().split('.');
        if parts.next() != Some(PREFIX) {
            return Err(TokenParseError("it does not start with skiff1."));
        }
        let hexpart = |p: Option<&str>, len: usize, what: &'static str| match p {
            Some(v) if v.len() == len && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(v.to_ascii_lowercase())
            }
            _ => Err(TokenParseError(what)),
        };
        let id = hexpart(parts.next(), 12, "bad id")?;
        let secret = hexpart(parts.next(), 48, "bad secret")?;
        let ca_fingerprint = hexpart(parts.next(), 64, "bad CA fingerprint")?;
        if parts.next().is_some() {
            return Err(TokenParseError("too many parts"));
        }
        Ok(JoinToken {
            id,
            secret,
            ca_fingerprint,
        })
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}",
            self.id, self.secret, self.ca_fingerprint
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let t = JoinToken::generate(&"ab".repeat(32));
        assert_eq!(JoinToken::parse(&t.to_string()).unwrap(), t);
        for bad in [
            "",
            "skiff1",
            "x.y.z.w",
            "skiff1.zz.zz.zz",
            &format!("{t}.x"),
        ] {
            assert!(JoinToken::parse(bad).is_err(), "{bad}");
        }
    }
}
