//! The audit trail: every change of the routing state, who made it, through what, and
//! what it changed.
//!
//! A change is attributed when it enters the store ([`Attribution`]: the API caller's token
//! or access key id, never a secret; `file` for a hand edit; the CLI user for `routes
//! push`) and recorded once it is committed ([`Record`]), with the changed part of the state
//! before and after. The store keeps the trail: with a routes file, in memory and in the
//! `audit_log` file (JSON lines, read back at start); in a fleet, in etcd beside the routes,
//! written in the same transaction as the change, so every replica shows the fleet's
//! history and no change is committed without its record.

mod diff;
mod trail;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::routes::RoutesFile;
use crate::routes::changes::Changes;
pub use diff::Change;
pub use trail::{AuditSettings, Trail};

/// Who asks for a change, and through what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// `token:…` (a fingerprint of the token), `ak:{access key id}`, `file`, `etcd`, or
    /// `cli:{user}@{host}`.
    pub actor: String,
    /// `functiongraph:UpdateVersionAlias`, `esa:CreateRoutineCodeDeployment`,
    /// `graygate:ReplaceRoutes`, `routes push`, `reload`.
    pub operation: String,
    pub request_id: Option<String>,
    /// What the request names, when it names it (a refused change has no diff to tell).
    pub function: Option<String>,
    pub alias: Option<String>,
    pub trigger: Option<String>,
}

/// How a change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Committed and served.
    Applied,
    /// Accepted, but the state already was what it asked for.
    Unchanged,
    /// Refused by the API (a business rule, a precondition, the store unavailable).
    Refused,
    /// A hand edit that does not validate: the previous state stays in force.
    Rejected,
}

/// One entry of the trail, as stored (etcd value, JSON line) and as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unique, and ordered by time within one replica.
    pub id: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub actor: String,
    pub replica: String,
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub result: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The revision of the state this change produced (file mode: the table's generation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// One line: functions and aliases added, changed, removed.
    #[serde(default)]
    pub summary: String,
    /// The changed part of each changed function, before and after.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// The changes were too large to keep whole: only names are listed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// What `GET /graygate/v1/audit` asks for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub function: Option<String>,
    pub alias: Option<String>,
    pub actor: Option<String>,
    pub limit: usize,
}

// === impl Attribution ===

impl Attribution {
    pub fn new(actor: impl Into<String>, operation: impl Into<String>) -> Self {
        Attribution {
            actor: actor.into(),
            operation: operation.into(),
            request_id: None,
            function: None,
            alias: None,
            trigger: None,
        }
    }

    /// A hand edit of the routes file, picked up by a reload.
    pub fn file() -> Self {
        Attribution::new("file", "reload")
    }

    /// A change of the state in etcd that no graygate made (etcdctl).
    pub fn etcd() -> Self {
        Attribution::new("etcd", "etcd put")
    }

    /// The bearer of an admin token: a fingerprint (the first 12 hex digits of the token's
    /// SHA-256) names it without revealing it; `printf %s "$TOKEN" | sha256sum` finds it.
    pub fn token_actor(token: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(token);
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("token:{hex}")
    }

    /// Whoever runs the CLI on this machine.
    pub fn cli(operation: &str) -> Self {
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        Attribution::new(format!("cli:{user}@{}", if host.is_empty() { "localhost" } else { host }), operation)
    }

    /// Builds the record of this change, as it ended.
    pub fn record(&self, replica: &str, result: Outcome, before: &RoutesFile, after: &RoutesFile) -> Record {
        let (changes, truncated) = diff::between(before, after);
        let only = |names: std::collections::BTreeSet<&str>| {
            if names.len() == 1 { names.first().map(|s| (*s).to_owned()) } else { None }
        };
        let function = self.function.clone().or_else(|| only(changes.iter().filter_map(Change::function).collect()));
        let alias = self.alias.clone().or_else(|| only(changes.iter().flat_map(Change::aliases).collect()));
        Record {
            function,
            alias,
            summary: Changes::between(before, after).to_string(),
            changes,
            truncated,
            ..self.bare(replica, result)
        }
    }

    /// The record of a change that was refused (or a file that was rejected): nothing
    /// changed, `error` says why.
    pub fn refused(&self, replica: &str, outcome: Outcome, error: String) -> Record {
        Record { error: Some(error), summary: "nothing".into(), ..self.bare(replica, outcome) }
    }

    fn bare(&self, replica: &str, result: Outcome) -> Record {
        Record {
            id: new_id(),
            time: now(),
            actor: self.actor.clone(),
            replica: replica.to_owned(),
            operation: self.operation.clone(),
            function: self.function.clone(),
            alias: self.alias.clone(),
            trigger: self.trigger.clone(),
            request_id: self.request_id.clone(),
            result,
            error: None,
            revision: None,
            summary: String::new(),
            changes: Vec::new(),
            truncated: false,
        }
    }
}

// === impl Record ===

impl Record {
    /// Whether the record is about `filter`'s function, alias and actor.
    pub fn matches(&self, filter: &Filter) -> bool {
        let function = filter.function.as_deref().is_none_or(|wanted| {
            self.function.as_deref() == Some(wanted) || self.changes.iter().any(|c| c.function() == Some(wanted))
        });
        let alias = filter.alias.as_deref().is_none_or(|wanted| {
            self.alias.as_deref() == Some(wanted) || self.changes.iter().any(|c| c.aliases().any(|a| a == wanted))
        });
        let actor = filter.actor.as_deref().is_none_or(|wanted| self.actor == wanted);
        function && alias && actor
    }
}

/// `{micros since the epoch, 16 digits}-{random}`: unique across replicas, and sorting
/// by id sorts one replica's records by time.
fn new_id() -> String {
    let micros = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000;
    format!("{micros:016}-{:08x}", fastrand::u32(..))
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests;
