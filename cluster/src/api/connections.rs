//! API types and client calls for connections (`/api/v1/connections`) and the cluster's address
//! plan (`/api/v1/network`).

use std::net::Ipv4Addr;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{ApiClient, ClientError};
use super::seg;
use crate::state::connections::{user_of, ConnectionKind, ConnectionRecord, Ipv4Range};
use crate::state::ClusterState;

/// A connection as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    pub name: String,
    pub owner: String,
    pub kind: ConnectionKind,
    pub internal_ip: Ipv4Addr,
    pub external_ip: Option<Ipv4Addr>,
    /// IP mappings: the forwarded ports; empty: all.
    pub ports: Vec<u16>,
    pub active: bool,
    /// The server whose interface uses it.
    pub server: Option<String>,
    pub created_at: u64,
}

impl ConnectionView {
    pub fn of(state: &ClusterState, c: &ConnectionRecord) -> Self {
        ConnectionView {
            name: c.name.clone(),
            owner: c.owner.clone(),
            kind: c.kind,
            internal_ip: c.internal_ip,
            external_ip: c.external_ip,
            ports: c.ports.clone(),
            active: c.active,
            server: user_of(state, &c.name).map(str::to_owned),
            created_at: c.created_at,
        }
    }
}

/// Body of `POST /api/v1/connections`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConnectionRequest {
    pub name: String,
    pub kind: ConnectionKind,
    /// A wanted internal address; absent: the lowest free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_ip: Option<Ipv4Addr>,
    /// A wanted external address (external_ip and ip_mapping); absent: the lowest free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ip: Option<Ipv4Addr>,
    /// ip_mapping: the ports to forward; absent or empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Admins only: create it for this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Put into effect at once (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

impl CreateConnectionRequest {
    pub fn new(name: impl Into<String>, kind: ConnectionKind) -> Self {
        CreateConnectionRequest {
            name: name.into(),
            kind,
            internal_ip: None,
            external_ip: None,
            ports: Vec::new(),
            owner: None,
            active: None,
        }
    }
}

/// The address plan as the API shows it (`GET /api/v1/network`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkView {
    pub internal_cidr: String,
    /// The leader's address on the internal network: the servers' gateway.
    pub internal_gateway: Ipv4Addr,
    pub internal_used: u64,
    /// `FIRST-LAST` ranges (or single addresses).
    pub external_pool: Vec<String>,
    pub external_total: u64,
    pub external_used: u64,
}

impl NetworkView {
    pub fn of(state: &ClusterState) -> Self {
        let n = &state.network;
        NetworkView {
            internal_cidr: n.internal().to_string(),
            internal_gateway: n.internal().gateway(),
            internal_used: state.connections.len() as u64,
            external_pool: n.external_pool.iter().map(|r| r.to_string()).collect(),
            external_total: n.external_total(),
            external_used: state
                .connections
                .values()
                .filter(|c| c.external_ip.is_some())
                .count() as u64,
        }
    }
}

/// Body of `PUT /api/v1/network` (admin): what is absent stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetNetworkRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_cidr: Option<String>,
    /// `FIRST-LAST` or single addresses; replaces the pool (an empty list empties it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_pool: Option<Vec<String>>,
}

impl SetNetworkRequest {
    /// The pool as ranges, or which entry is malformed.
    pub fn pool(&self) -> Result<Option<Vec<Ipv4Range>>, String> {
        self.external_pool
            .as_ref()
            .map(|p| p.iter().map(|r| Ipv4Range::parse(r)).collect())
            .transpose()
    }
}

impl ApiClient {
    /// `GET /api/v1/connections`: the caller's connections (all for admins).
    pub async fn connections(&self) -> Result<Vec<ConnectionView>, ClientError> {
        self.call::<(), _>(Method::GET, "/connections", None).await
    }

    /// `GET /api/v1/connections/{name}`.
    pub async fn connection(&self, name: &str) -> Result<ConnectionView, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/connections/{}", seg(name)), None)
            .await
    }

    /// `POST /api/v1/connections`: answers the new connection with its addresses.
    pub async fn create_connection(
        &self,
        req: &CreateConnectionRequest,
    ) -> Result<ConnectionView, ClientError> {
        self.call(Method::POST, "/connections", Some(req)).await
    }

    /// `POST /api/v1/connections/{name}/activate` or `/deactivate`.
    pub async fn set_connection_active(
        &self,
        name: &str,
        active: bool,
    ) -> Result<ConnectionView, ClientError> {
        let op = if active { "activate" } else { "deactivate" };
        self.call::<(), _>(
            Method::POST,
            &format!("/connections/{}/{op}", seg(name)),
            None,
        )
        .await
    }

    /// `DELETE /api/v1/connections/{name}`: answers what was removed.
    pub async fn remove_connection(&self, name: &str) -> Result<ConnectionView, ClientError> {
        self.call::<(), _>(Method::DELETE, &format!("/connections/{}", seg(name)), None)
            .await
    }

    /// `GET /api/v1/network`.
    pub async fn network(&self) -> Result<NetworkView, ClientError> {
        self.call::<(), _>(Method::GET, "/network", None).await
    }

    /// `PUT /api/v1/network` (admin).
    pub async fn set_network(&self, req: &SetNetworkRequest) -> Result<NetworkView, ClientError> {
        self.call(Method::PUT, "/network", Some(req)).await
    }
}
