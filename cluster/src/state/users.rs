//! Users of the control API as the desired state records them.

use serde::{Deserialize, Serialize};

/// What a user may do.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum UserRole {
    Admin,
    User,
    ReadOnly,
}

/// A user of the control API.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub role: UserRole,
    /// Hex serials of the client certificates issued to this user.
    pub cert_serials: Vec<String>,
    pub disabled: bool,
}
