//! etcd v3's messages as its JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, `/v3/watch`,
//! `/v3/lease/*`) sends and takes them: the protobuf messages in proto3's JSON mapping.
//!
//! Two rules of that mapping shape every type here: 64-bit integers travel as strings
//! (`"revision": "42"`), bytes as base64, and fields at their default value are left out
//! (`"succeeded": false` and an event's `"type": "PUT"` never appear). Only the fields
//! graygate reads or sends are modelled; unknown fields are ignored, as the mapping requires.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// === requests ===

#[derive(Debug, Default, Serialize)]
pub struct RangeRequest {
    #[serde(serialize_with = "b64")]
    pub key: Vec<u8>,
    #[serde(serialize_with = "b64", skip_serializing_if = "Vec::is_empty")]
    pub range_end: Vec<u8>,
    #[serde(serialize_with = "i64_text", skip_serializing_if = "is_zero")]
    pub limit: i64,
    #[serde(serialize_with = "i64_text", skip_serializing_if = "is_zero")]
    pub revision: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub keys_only: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub count_only: bool,
}

#[derive(Debug, Serialize)]
pub struct PutRequest {
    #[serde(serialize_with = "b64")]
    pub key: Vec<u8>,
    #[serde(serialize_with = "b64")]
    pub value: Vec<u8>,
    #[serde(serialize_with = "i64_text", skip_serializing_if = "is_zero")]
    pub lease: i64,
}

#[derive(Debug, Serialize)]
pub struct DeleteRangeRequest {
    #[serde(serialize_with = "b64")]
    pub key: Vec<u8>,
    #[serde(serialize_with = "b64", skip_serializing_if = "Vec::is_empty")]
    pub range_end: Vec<u8>,
}

/// One condition of a transaction; the JSON names the compared field after the target.
#[derive(Debug, Serialize)]
pub struct Compare {
    #[serde(serialize_with = "b64")]
    pub key: Vec<u8>,
    #[serde(serialize_with = "b64", skip_serializing_if = "Vec::is_empty")]
    pub range_end: Vec<u8>,
    pub target: &'static str,
    pub result: &'static str,
    #[serde(serialize_with = "opt_i64_text", skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<i64>,
    #[serde(serialize_with = "opt_i64_text", skip_serializing_if = "Option::is_none")]
    pub create_revision: Option<i64>,
    #[serde(serialize_with = "opt_i64_text", skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

#[derive(Debug, Serialize)]
pub enum RequestOp {
    #[serde(rename = "request_put")]
    Put(PutRequest),
    #[serde(rename = "request_delete_range")]
    Delete(DeleteRangeRequest),
}

#[derive(Debug, Default, Serialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

#[derive(Debug, Serialize)]
pub struct WatchCreate {
    pub create_request: WatchCreateRequest,
}

#[derive(Debug, Serialize)]
pub struct WatchCreateRequest {
    #[serde(serialize_with = "b64")]
    pub key: Vec<u8>,
    #[serde(serialize_with = "b64")]
    pub range_end: Vec<u8>,
    #[serde(serialize_with = "i64_text")]
    pub start_revision: i64,
    pub progress_notify: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub struct LeaseGrantRequest {
    #[serde(rename = "TTL", serialize_with = "i64_text")]
    pub ttl: i64,
}

#[derive(Debug, Serialize)]
pub struct LeaseId {
    #[serde(rename = "ID", serialize_with = "i64_text")]
    pub id: i64,
}

#[derive(Debug, Serialize)]
pub struct AuthenticateRequest<'a> {
    pub name: &'a str,
    pub password: &'a str,
}

#[derive(Debug, Serialize)]
pub struct CompactionRequest {
    #[serde(serialize_with = "i64_text")]
    pub revision: i64,
}

// === responses ===

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Header {
    #[serde(default, deserialize_with = "i64_any")]
    pub revision: i64,
    #[serde(default)]
    pub cluster_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeyValue {
    #[serde(deserialize_with = "from_b64")]
    pub key: Bytes,
    #[serde(default, deserialize_with = "i64_any")]
    pub create_revision: i64,
    #[serde(default, deserialize_with = "i64_any")]
    pub mod_revision: i64,
    #[serde(default, deserialize_with = "from_b64")]
    pub value: Bytes,
}

#[derive(Debug, Default, Deserialize)]
pub struct RangeResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub kvs: Vec<KeyValue>,
    #[serde(default)]
    pub more: bool,
    #[serde(default, deserialize_with = "i64_any")]
    pub count: i64,
}

#[derive(Debug, Default, Deserialize)]
pub struct TxnResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub succeeded: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct PutResponse {
    #[serde(default)]
    pub header: Header,
}

#[derive(Debug, Default, Deserialize)]
pub struct LeaseGrantResponse {
    #[serde(rename = "ID", default, deserialize_with = "i64_any")]
    pub id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "i64_any")]
    pub ttl: i64,
    #[serde(default)]
    pub error: String,
}

/// A keep-alive answer; a TTL of 0 (left out) means the lease no longer exists.
#[derive(Debug, Default, Deserialize)]
pub struct LeaseKeepAliveResponse {
    #[serde(rename = "TTL", default, deserialize_with = "i64_any")]
    pub ttl: i64,
}

#[derive(Debug, Default, Deserialize)]
pub struct AuthenticateResponse {
    #[serde(default)]
    pub token: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct WatchResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub canceled: bool,
    #[serde(default, deserialize_with = "i64_any")]
    pub compact_revision: i64,
    #[serde(default)]
    pub cancel_reason: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Event {
    /// `PUT` is the default and never sent; `DELETE` is.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub kv: KeyValue,
}

/// Streaming answers come wrapped: `{"result": …}` or `{"error": …}`.
#[derive(Debug, Deserialize)]
pub struct StreamItem<T> {
    pub result: Option<T>,
    pub error: Option<ErrorBody>,
}

/// The gateway's error body; `code` is the gRPC status code.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub error: String,
}

// === impl Event ===

impl Event {
    pub fn is_delete(&self) -> bool {
        self.kind == "DELETE"
    }
}

// === encodings ===

fn b64<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(bytes))
}

fn i64_text<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&value.to_string())
}

fn opt_i64_text<S: Serializer>(value: &Option<i64>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.serialize_str(&value.to_string()),
        None => serializer.serialize_none(),
    }
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A 64-bit integer as proto3 JSON sends it (a string) or as a plain number.
fn i64_any<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) => text.parse().map_err(D::Error::custom),
        serde_json::Value::Number(number) => number.as_i64().ok_or_else(|| D::Error::custom("not a 64-bit integer")),
        serde_json::Value::Null => Ok(0),
        other => Err(D::Error::custom(format!("expected an integer, got {other}"))),
    }
}

fn from_b64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    use serde::de::Error;
    let text = <Option<String>>::deserialize(deserializer)?.unwrap_or_default();
    STANDARD.decode(text.as_bytes()).map(Bytes::from).map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_gateway_sends_with_defaults_left_out() {
        let text = r#"{"result":{"header":{"cluster_id":"3249","revision":"3"},"events":[
            {"kv":{"key":"L3QvYQ==","create_revision":"2","mod_revision":"3","version":"2","value":"aGVsbG8="}},
            {"type":"DELETE","kv":{"key":"L3QvYg==","mod_revision":"3"}}]}}"#;
        let item: StreamItem<WatchResponse> = serde_json::from_str(text).unwrap_or_else(|e| unreachable!("{e}"));
        let response = item.result.unwrap_or_default();
        assert_eq!(response.header.revision, 3);
        assert!(!response.created && !response.canceled);
        assert_eq!(&response.events[0].kv.key[..], b"/t/a");
        assert_eq!(&response.events[0].kv.value[..], b"hello");
        assert!(!response.events[0].is_delete());
        assert!(response.events[1].is_delete());
        assert!(response.events[1].kv.value.is_empty());
        let txn: TxnResponse = serde_json::from_str(r#"{"header":{"revision":"7"}}"#).unwrap_or_default();
        assert!(!txn.succeeded, "a left-out `succeeded` is false");
    }

    #[test]
    fn writes_integers_as_strings_and_bytes_as_base64() {
        let compare = Compare {
            key: b"/k".to_vec(),
            range_end: Vec::new(),
            target: "MOD",
            result: "LESS",
            mod_revision: Some(12),
            create_revision: None,
            version: None,
        };
        let text = serde_json::to_string(&compare).unwrap_or_default();
        assert_eq!(text, r#"{"key":"L2s=","target":"MOD","result":"LESS","mod_revision":"12"}"#);
    }
}
