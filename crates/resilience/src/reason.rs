//! Why an attempt failed, as a closed set: code matches on it, and its label is the `reason` of
//! `nexus_retry_queue_additions_total` (API.md section 8).

/// The class of a failed attempt ([`crate::AttemptError::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The target could not be reached (DNS, refused connection, TLS, reset).
    Connect,
    /// No answer within the call's timeout.
    Timeout,
    /// The target answered with a status other than 2xx (and other than `410` for webhooks).
    Status,
    /// The target answered `410 Gone`.
    Gone,
    /// The private-address guard refused the target.
    Private,
    /// The request could not be built (a bad URL or header).
    Request,
    /// The store failed while preparing the attempt.
    Store,
    /// The subscription's secret cannot be used to sign.
    Secret,
    /// The event could not be encoded as the body.
    Encode,
    /// A consumer this server has no runner for.
    NoRunner,
    /// A reactor refused an event whose correlation chain is too deep.
    Cycle,
    /// A delivery for a reactor that is no longer configured.
    UnknownReactor,
    /// A reactor's call succeeded but its event could not be emitted.
    Emit,
    /// A reactor's call succeeded but its answer was too large or cut off to emit.
    Answer,
    /// An in-process reactor failed.
    Reactor,
    /// The attempt panicked.
    Panic,
}

impl Reason {
    /// Every reason, for tests and documentation.
    pub const ALL: [Reason; 16] = [
        Reason::Connect,
        Reason::Timeout,
        Reason::Status,
        Reason::Gone,
        Reason::Private,
        Reason::Request,
        Reason::Store,
        Reason::Secret,
        Reason::Encode,
        Reason::NoRunner,
        Reason::Cycle,
        Reason::UnknownReactor,
        Reason::Emit,
        Reason::Answer,
        Reason::Reactor,
        Reason::Panic,
    ];

    /// The metric label: `snake_case`, stable.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Timeout => "timeout",
            Reason::Status => "status",
            Reason::Gone => "gone",
            Reason::Private => "private",
            Reason::Request => "request",
            Reason::Store => "store",
            Reason::Secret => "secret",
            Reason::Encode => "encode",
            Reason::NoRunner => "no_runner",
            Reason::Cycle => "cycle",
            Reason::UnknownReactor => "unknown_reactor",
            Reason::Emit => "emit",
            Reason::Answer => "answer",
            Reason::Reactor => "reactor",
            Reason::Panic => "panic",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let label = r.as_str();
            assert!(seen.insert(label), "{label} twice");
            assert!(
                label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{label}"
            );
            assert_eq!(r.to_string(), label);
        }
    }
}
