//! What can go wrong with one request. Its `Display` is also the key errors
//! are counted by, so it must stay low-cardinality: no tokens, no ids.

/// A request that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The server answered with another status than the endpoint's success.
    #[error("HTTP {status}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Status {
        status: u16,
        code: Option<String>,
        /// The server's `Retry-After`, in seconds (not part of the key).
        retry_after: Option<u64>,
    },
    /// A success status with a body the profile does not describe.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// Connecting, sending or reading failed.
    #[error("connection: {0}")]
    Connection(String),
}

impl Failure {
    pub fn connection(e: impl std::fmt::Display) -> Self {
        Failure::Connection(e.to_string())
    }

    /// How long the server asked to wait before trying again.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Failure::Status {
                retry_after: Some(s),
                ..
            } => Some(std::time::Duration::from_secs(*s)),
            _ => None,
        }
    }

    /// Whether the server refused because of its throttles or hashing queue,
    /// which a bench run needs switched off or sized up.
    pub fn is_throttle(&self) -> bool {
        matches!(
            self,
            Failure::Status {
                status: 429 | 503,
                ..
            }
        )
    }
}
