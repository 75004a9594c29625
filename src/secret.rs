//! Secrets from the configuration: admin tokens, access-key secrets, the etcd password.
//! Never printed, compared only in constant time.

use subtle::ConstantTimeEq;

/// A secret value; its `Debug` is redacted and it has no `PartialEq` (CWE-208).
#[derive(Clone)]
pub struct Secret(Box<[u8]>);

/// An access key pair accepted by both signature schemes.
#[derive(Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: Secret,
}

// === impl Secret ===

impl Secret {
    pub fn new(value: &str) -> Self {
        Secret(value.as_bytes().into())
    }

    /// Constant-time comparison with what a caller presented.
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_ref().ct_eq(presented))
    }

    /// The raw bytes, for keying a MAC or sending to the service that checks them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessKey({}, <redacted>)", self.id)
    }
}
