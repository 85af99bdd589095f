//! API types and client calls for backups (`/api/v1/backups`) and their daily schedules.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{ApiClient, ClientError};
use super::servers::TaskAccepted;
use crate::state::backups::{backup_busy_with, BackupRecord, BackupSchedule, BackupTarget};
use crate::state::ClusterState;

/// A backup as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupView {
    pub id: u64,
    /// What it is a backup of.
    pub target: BackupTarget,
    pub owner: String,
    pub node: String,
    /// The pool images copied.
    pub files: Vec<String>,
    pub created_at: u64,
    /// Made by a daily schedule.
    pub scheduled: bool,
    /// False until its node has made it.
    pub ready: bool,
    pub busy_task: Option<u64>,
}

impl BackupView {
    pub fn of(state: &ClusterState, b: &BackupRecord) -> Self {
        BackupView {
            id: b.id,
            target: b.target.clone(),
            owner: b.owner.clone(),
            node: b.node.clone(),
            files: b.files.clone(),
            created_at: b.created_at,
            scheduled: b.scheduled,
            ready: b.ready,
            busy_task: backup_busy_with(state, b),
        }
    }
}

/// Names an image, a server or a ZFS pool (admins): exactly one of the three.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupTargetRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

impl BackupTargetRequest {
    /// The target, or why the request names none or several.
    pub fn target(&self) -> Result<BackupTarget, String> {
        match (&self.image, &self.server, &self.pool) {
            (Some(name), None, None) => Ok(BackupTarget::Image { name: name.clone() }),
            (None, Some(name), None) => Ok(BackupTarget::Server { name: name.clone() }),
            (None, None, Some(name)) => Ok(BackupTarget::Pool { name: name.clone() }),
            _ => Err("name exactly one of image, server and pool".into()),
        }
    }
}

/// Body of `POST /api/v1/backups/schedules`: `hour_utc` and `keep` set the daily schedule of the
/// target; both absent drop it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour_utc: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
}

impl ScheduleRequest {
    /// The target, or why the request names none or both.
    pub fn target(&self) -> Result<BackupTarget, String> {
        BackupTargetRequest {
            image: self.image.clone(),
            server: self.server.clone(),
            pool: self.pool.clone(),
        }
        .target()
    }
}

impl ApiClient {
    /// `GET /api/v1/backups`: the caller's backups (all for admins), oldest first.
    pub async fn backups(&self) -> Result<Vec<BackupView>, ClientError> {
        self.call::<(), _>(Method::GET, "/backups", None).await
    }

    /// `POST /api/v1/backups`: back up an image or a (stopped) server now.
    pub async fn create_backup(
        &self,
        target: &BackupTargetRequest,
    ) -> Result<TaskAccepted, ClientError> {
        self.call(Method::POST, "/backups", Some(target)).await
    }

    /// `POST /api/v1/backups/{id}/restore`: put the backup's copies back in place.
    pub async fn restore_backup(&self, id: u64) -> Result<TaskAccepted, ClientError> {
        self.call::<(), _>(Method::POST, &format!("/backups/{id}/restore"), None)
            .await
    }

    /// `DELETE /api/v1/backups/{id}`.
    pub async fn remove_backup(&self, id: u64) -> Result<TaskAccepted, ClientError> {
        self.call::<(), _>(Method::DELETE, &format!("/backups/{id}"), None)
            .await
    }

    /// `GET /api/v1/backups/schedules`.
    pub async fn backup_schedules(&self) -> Result<Vec<BackupSchedule>, ClientError> {
        self.call::<(), _>(Method::GET, "/backups/schedules", None)
            .await
    }

    /// `POST /api/v1/backups/schedules`: sets or drops a daily schedule; answers the schedules.
    pub async fn set_backup_schedule(
        &self,
        req: &ScheduleRequest,
    ) -> Result<Vec<BackupSchedule>, ClientError> {
        self.call(Method::POST, "/backups/schedules", Some(req))
            .await
    }
}
