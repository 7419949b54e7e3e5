//! Exit codes: what each means (shown by `--help`) and which a failure gets.

use nexus_client::Error;

/// What the exit codes mean; shown by `--help`.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the server answered with an error (4xx/5xx; its code is printed), or `health` is not ok
  2  usage or configuration error (bad flag, missing token, invalid input)
  3  the server could not be reached or did not answer in time";

/// A usage or configuration error: exit code 2.
#[derive(Debug)]
pub(crate) struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// `health` found the server not ok: exit code 1.
#[derive(Debug)]
pub(crate) struct Unhealthy(pub(crate) String);

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the server is {}", self.0)
    }
}

impl std::error::Error for Unhealthy {}

pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// The exit code of a failure, per [`EXIT_CODES`].
pub(crate) fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Usage>().is_some() {
        return 2;
    }
    if e.downcast_ref::<Unhealthy>().is_some() {
        return 1;
    }
    match e.downcast_ref::<Error>().map(Error::last) {
        Some(Error::Invalid { .. }) => 2,
        Some(Error::Network { .. } | Error::Timeout { .. }) => 3,
        Some(_) => 1,
        None => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_client::Draft;
    use std::time::Duration;

    #[test]
    fn failures_map_to_the_documented_exit_codes() {
        // An API error is exit code 1; the integration tests get one from a real server.
        assert_eq!(exit_code(&usage("x")), 2);
        let invalid = Draft::of_type("bad type!").expect_err("invalid");
        assert_eq!(exit_code(&anyhow::Error::new(invalid)), 2);
        let network = Error::Network {
            url: "u".into(),
            reason: "r".into(),
        };
        let gave_up = Error::GaveUp {
            attempts: 3,
            last: Box::new(network),
        };
        assert_eq!(exit_code(&anyhow::Error::new(gave_up)), 3);
        let timeout = Error::Timeout {
            url: "u".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(exit_code(&anyhow::Error::new(timeout)), 3);
        assert_eq!(exit_code(&anyhow::Error::new(Error::Closed)), 1);
        assert_eq!(
            exit_code(&anyhow::Error::new(Unhealthy("degraded".into()))),
            1
        );
    }
}
