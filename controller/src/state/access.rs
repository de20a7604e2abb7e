//! Who may use the cluster, as the log records it: tokens (their public id
//! and a SHA-256 of the secret, never the secret). The policy's own type
//! is `berth_proto::policy::Policy`, shared with the agents that re-check
//! it; its serde form is frozen like the rest of the log's.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenRecord {
    /// Public id: the first part of the secret, shown by `token list`.
    pub id: String,
    /// The user it authenticates (a join token: the node name it may take,
    /// or empty for any).
    pub user: String,
    /// admin, user, viewer, or "join".
    pub role: String,
    /// Lower-case hex SHA-256 of the whole secret.
    pub hash: String,
    pub created_ms: i64,
    /// 0: never.
    pub expires_ms: i64,
}

impl TokenRecord {
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_ms != 0 && now_ms >= self.expires_ms
    }
}
