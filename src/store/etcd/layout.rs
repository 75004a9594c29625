//! Where the fleet's keys live under its prefix, and what their values are.
//!
//! ```text
//!   {prefix}/routes/head                 {"set": S, "project_id", "region", "format": 1}
//!   {prefix}/routes/set/{S}/fn/{name}    one function (the routes file's function entry, JSON)
//!   {prefix}/replicas/{id}               a replica's registration (on a lease): what it serves
//!   {prefix}/audit/{id}                  one audit record (JSON), written with the change
//! ```
//! The routing state is the head plus every key of the set it names. A change through the
//! API is one transaction that rewrites the functions it changed and the head (the head's
//! mod revision is the fleet-wide guard); `graygate routes push` writes a whole new set in
//! batches that nobody reads, then flips the head to it in one transaction and removes
//! every other set — so a push of any size is atomic, within etcd's default limits of 128
//! operations and 1.5 MiB per request. Keys of a set other than `fn/` are reserved for what
//! is persisted with the routes later (rollouts); a state holding one this version does not
//! know is rejected, not half-applied.

use serde::{Deserialize, Serialize};

use crate::routes::FunctionSpec;

/// The layout's version, in the head; a head of another format is rejected.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
}

/// The head: which set holds the state, and the state's project and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub set: String,
    pub project_id: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub format: u32,
}

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'k> {
    Head,
    Function {
        set: &'k str,
        name: &'k str,
    },
    /// Another key inside a set (a kind this version does not know).
    InSet {
        set: &'k str,
    },
    Replica {
        id: &'k str,
    },
    Audit {
        id: &'k str,
    },
    /// Outside the layout: ignored (left to whoever wrote it).
    Other,
}

fn default_region() -> String {
    "local".to_owned()
}

// === impl Layout ===

impl Layout {
    pub fn new(prefix: &str) -> Self {
        Layout { prefix: prefix.trim_end_matches('/').to_owned() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn head(&self) -> String {
        format!("{}/routes/head", self.prefix)
    }

    /// Every key of the routing state, all sets included.
    pub fn routes(&self) -> (Vec<u8>, Vec<u8>) {
        range_of(&format!("{}/routes/", self.prefix))
    }

    /// Every key of the fleet (what the watch covers).
    pub fn all(&self) -> (Vec<u8>, Vec<u8>) {
        range_of(&format!("{}/", self.prefix))
    }

    pub fn set(&self, set: &str) -> (Vec<u8>, Vec<u8>) {
        range_of(&format!("{}/routes/set/{set}/", self.prefix))
    }

    /// All sets: `[start, end)` of the set directory.
    pub fn sets(&self) -> (Vec<u8>, Vec<u8>) {
        range_of(&format!("{}/routes/set/", self.prefix))
    }

    pub fn function(&self, set: &str, name: &str) -> String {
        format!("{}/routes/set/{set}/fn/{name}", self.prefix)
    }

    pub fn replicas(&self) -> (Vec<u8>, Vec<u8>) {
        range_of(&format!("{}/replicas/", self.prefix))
    }

    pub fn replica(&self, id: &str) -> String {
        format!("{}/replicas/{id}", self.prefix)
    }

    /// The audit trail's keys.
    pub fn audits(&self) -> (Vec<u8>, Vec<u8>) {
        range_of(&format!("{}/audit/", self.prefix))
    }

    pub fn audit(&self, id: &str) -> String {
        format!("{}/audit/{id}", self.prefix)
    }

    pub fn classify<'k>(&self, key: &'k str) -> Key<'k> {
        let Some(rest) = key.strip_prefix(self.prefix.as_str()).and_then(|rest| rest.strip_prefix('/')) else {
            return Key::Other;
        };
        if rest == "routes/head" {
            return Key::Head;
        }
        if let Some(id) = rest.strip_prefix("replicas/") {
            return if id.is_empty() { Key::Other } else { Key::Replica { id } };
        }
        if let Some(id) = rest.strip_prefix("audit/") {
            return if id.is_empty() || id.contains('/') { Key::Other } else { Key::Audit { id } };
        }
        let Some(in_sets) = rest.strip_prefix("routes/set/") else {
            return Key::Other;
        };
        let Some((set, item)) = in_sets.split_once('/') else {
            return Key::Other;
        };
        match item.strip_prefix("fn/") {
            Some(name) if !name.contains('/') => Key::Function { set, name },
            _ => Key::InSet { set },
        }
    }
}

/// `[prefix, prefix + 1)`: every key that starts with `prefix`.
pub fn range_of(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let start = prefix.as_bytes().to_vec();
    let mut end = start.clone();
    // Keys here end in '/', so the last byte is never 0xff.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    (start, end)
}

/// A new set's name: time-ordered and unique enough that two pushes never collide.
pub fn new_set_name() -> String {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    format!("{millis:013}-{:08x}", fastrand::u32(..))
}

/// A function's value as stored: compact JSON of the routes file's entry.
pub fn encode_function(function: &FunctionSpec) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(function)
}

pub fn decode_function(name: &str, value: &[u8]) -> Result<FunctionSpec, String> {
    // Linear and stops at the bound: a value put by hand is as hostile as a file.
    crate::routes::limits::json_depth(value, name)
        .map_err(|e| e.problems.first().map(|p| p.message.clone()).unwrap_or_default())?;
    let mut deserializer = serde_json::Deserializer::from_slice(value);
    let function: FunctionSpec =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| match e.path().to_string().as_str() {
            "." | "?" => e.into_inner().to_string(),
            path => format!("{path}: {}", e.into_inner()),
        })?;
    if function.name != name {
        return Err(format!("the function is named \"{}\" but its key says \"{name}\"", function.name));
    }
    Ok(function)
}

pub fn decode_head(value: &[u8]) -> Result<Head, String> {
    let head: Head = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    if head.format != FORMAT {
        return Err(format!("format {} is not one this graygate reads ({FORMAT})", head.format));
    }
    if head.set.is_empty() || head.set.contains('/') {
        return Err(format!("set \"{}\" is not a set name", head.set));
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_classified_by_where_they_sit() {
        let layout = Layout::new("/gg/");
        assert_eq!(layout.head(), "/gg/routes/head");
        assert_eq!(layout.classify("/gg/routes/head"), Key::Head);
        assert_eq!(layout.classify(&layout.function("s1", "hello")), Key::Function { set: "s1", name: "hello" });
        assert_eq!(layout.classify("/gg/routes/set/s1/rollout/hello"), Key::InSet { set: "s1" });
        assert_eq!(layout.classify("/gg/replicas/host:9090"), Key::Replica { id: "host:9090" });
        assert_eq!(layout.classify(&layout.audit("0001-ab")), Key::Audit { id: "0001-ab" });
        assert_eq!(layout.classify("/ggx/routes/head"), Key::Other);
        assert_eq!(layout.classify("/gg/other"), Key::Other);
        assert_eq!(layout.all(), (b"/gg/".to_vec(), b"/gg0".to_vec()));
    }

    #[test]
    fn a_head_of_another_format_or_a_key_naming_another_function_is_refused() {
        assert!(decode_head(br#"{"set":"s","project_id":"p","format":2}"#).is_err());
        assert!(decode_head(br#"{"set":"s","project_id":"p","format":1}"#).is_ok());
        let function = br#"{"name":"a","upstream":"http://x:1"}"#;
        assert!(decode_function("a", function).is_ok());
        assert!(decode_function("b", function).unwrap_err().contains("named \"a\""));
        assert!(decode_function("a", br#"{"name":"a","upstream":"http://x:1","extra":1}"#).is_err());
    }
}
