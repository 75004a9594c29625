//! The routes file as it is written on disk: plain serde structs, no semantics.
//!
//! Field names are FunctionGraph's (`additional_version_weights`, `combine_type`, …) so the
//! file and the management API speak one vocabulary. Every struct denies unknown fields: a
//! typo is an error, never a silently ignored setting. These types are also what the
//! management API serialises back, so `skip_serializing_if` keeps written files minimal.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The whole routing state: every function, its versions, aliases and triggers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    /// Project the functions belong to (part of every URN).
    pub project_id: String,
    /// Region name used in URNs.
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default, deserialize_with = "compact_functions")]
    pub functions: Vec<FunctionSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    pub name: String,
    #[serde(default = "default_package")]
    pub package: String,
    /// What `latest` runs.
    pub upstream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Per-function request timeout (until the upstream's response headers arrive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<AliasSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerSpec>,
}

/// An immutable published version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSpec {
    pub version: String,
    pub upstream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the version was published (set by the management API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// A named pointer to a version, optionally sending part of the traffic elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasSpec {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Additional version → percentage of traffic (file order is kept).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub additional_version_weights: IndexMap<String, i64>,
    /// Additional version → header rules; tested in file order before the weights.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub additional_version_strategy: IndexMap<String, VersionStrategy>,
    /// Pins one user to one version by hashing a request key instead of rotating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<StickySpec>,
    /// When the alias last changed (set by the management API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// The ESA deployment that set this alias, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionStrategy {
    #[serde(default = "default_combine_type")]
    pub combine_type: String,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(default = "default_rule_type")]
    pub rule_type: String,
    pub param: String,
    pub op: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// An APIG trigger: a request path bound to a version, `latest` or an alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// Defaults to `API_{function}{target}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Defaults to `/{function}-{target}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub target: String,
    /// `ANY` (the default) or one HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req_method: Option<String>,
    /// Stable identifier for the management API; derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
    /// When the trigger was created (set by the management API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<String>,
    /// `ACTIVE` (the default) or `DISABLED`: a disabled trigger keeps its path and routes
    /// nothing (its requests answer 404 `APIG.0101`).
    #[serde(default, skip_serializing_if = "TriggerStatus::is_active")]
    pub trigger_status: TriggerStatus,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerStatus {
    #[default]
    #[serde(rename = "ACTIVE")]
    Active,
    #[serde(rename = "DISABLED")]
    Disabled,
}

fn default_region() -> String {
    "local".to_owned()
}

fn default_package() -> String {
    "default".to_owned()
}

fn default_combine_type() -> String {
    "and".to_owned()
}

fn default_rule_type() -> String {
    "Header".to_owned()
}

// === impl FunctionSpec ===

impl FunctionSpec {
    /// Gives back the spare capacity deserialisation leaves behind. Vectors grow to four
    /// elements on their first push and a function mostly holds ones and twos: kept for
    /// the table's lifetime, the slack was 60 % of a 10,000-function model.
    fn shrink_to_fit(&mut self) {
        self.versions.shrink_to_fit();
        self.aliases.shrink_to_fit();
        self.triggers.shrink_to_fit();
        for alias in &mut self.aliases {
            alias.additional_version_weights.shrink_to_fit();
            alias.additional_version_strategy.shrink_to_fit();
            for strategy in alias.additional_version_strategy.values_mut() {
                strategy.rules.shrink_to_fit();
            }
        }
    }
}

/// Reads the function list compacting each function as it arrives, so a large file never
/// holds its whole model at deserialisation's slack (the peak is what the allocator keeps).
fn compact_functions<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<FunctionSpec>, D::Error> {
    struct Functions;

    impl<'de> Visitor<'de> for Functions {
        type Value = Vec<FunctionSpec>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of functions")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut functions = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(mut function) = seq.next_element::<FunctionSpec>()? {
                function.shrink_to_fit();
                functions.push(function);
            }
            functions.shrink_to_fit();
            Ok(functions)
        }
    }

    deserializer.deserialize_seq(Functions)
}

// === impl TriggerStatus ===

impl TriggerStatus {
    pub fn is_active(&self) -> bool {
        *self == TriggerStatus::Active
    }

    /// FunctionGraph's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerStatus::Active => "ACTIVE",
            TriggerStatus::Disabled => "DISABLED",
        }
    }
}

// === impl TriggerSpec ===

impl TriggerSpec {
    // Both are built by hand rather than with `format!`: a reload of 10,000 functions
    // derives them 40,000 times, and the formatting machinery was 4 % of it.
    pub fn effective_name(&self, function: &str) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => concat(&["API_", function, &self.target]),
        }
    }

    pub fn effective_path(&self, function: &str) -> String {
        match &self.path {
            Some(path) => path.clone(),
            None => concat(&["/", function, "-", &self.target]),
        }
    }

    /// The id the management API shows: the stored one, or one derived from the function
    /// and trigger names (stable across restarts for hand-written triggers).
    pub fn effective_id(&self, function: &str) -> String {
        if let Some(id) = &self.trigger_id {
            return id.clone();
        }
        let key = format!("{function}/{}", self.effective_name(function));
        let bits = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
        let hex = format!("{bits:032x}");
        format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
    }
}

fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    parts.iter().for_each(|part| out.push_str(part));
    out
}
