//! The private-address guard: outbound calls must not reach the inside network in production.
//!
//! [`is_private`] says which addresses are off limits, [`refuse_private`] checks a URL before it is
//! stored (the admin API, the server's start), and [`GuardedResolver`] checks again at connect
//! time, so a DNS name that changes after the check cannot slip through. A refusal is a
//! [`PrivateAddress`], found again by type in the client's error chain.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

/// A host that is or resolves to an address the guard refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}; set NEXUS_ALLOW_PRIVATE_TARGETS=true to allow",
    where_it_points(host, *ip)
)]
pub struct PrivateAddress {
    /// The host as the URL names it.
    pub host: String,
    /// The refused address.
    pub ip: IpAddr,
}

/// `10.0.0.1 is a private address` for an IP literal, `inside.example resolves to 10.0.0.1, a
/// private address` for a name.
fn where_it_points(host: &str, ip: IpAddr) -> String {
    if host.parse::<IpAddr>().is_ok_and(|literal| literal == ip) {
        format!("{ip} is a private address")
    } else {
        format!("{host} resolves to {ip}, a private address")
    }
}

/// Why [`refuse_private`] refused a URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// Not an absolute `http`/`https` URL with a host.
    #[error(transparent)]
    Url(#[from] nexus_store::StoreError),
    /// The host does not resolve.
    #[error("cannot resolve {host}: {source}")]
    Unresolved {
        /// The host.
        host: String,
        /// What the resolver said.
        #[source]
        source: std::io::Error,
    },
    /// The host is or resolves to a private address.
    #[error(transparent)]
    Private(#[from] PrivateAddress),
}

/// Whether an address is loopback, private, link-local or otherwise not on the internet:
/// unspecified and "this network" (`0.0.0.0/8`), carrier-grade NAT (`100.64.0.0/10`), multicast,
/// reserved (`240.0.0.0/4`), broadcast, IPv6 unique-local and link-local, and IPv4 addresses
/// embedded in IPv6 (mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`).
///
/// ```
/// use nexus_outbound::is_private;
/// assert!(is_private("10.1.2.3".parse()?));
/// assert!(is_private("::ffff:127.0.0.1".parse()?));
/// assert!(!is_private("93.184.216.34".parse()?));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || a == 100 && (b & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && is_private(embedded(s[6], s[7])))
                || (s[0] == 0x2002 && is_private(embedded(s[1], s[2])))
        }
    }
}

/// Resolves a URL's host and refuses it when any of its addresses is loopback, private or
/// link-local (or the URL is not an absolute `http`/`https` one).
pub async fn refuse_private(url: &str) -> Result<(), GuardError> {
    let origin = nexus_store::target_origin(url)?;
    let host_port = origin
        .split_once("://")
        .map_or(origin.as_str(), |(_, rest)| rest);
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    let addrs =
        tokio::net::lookup_host(host_port)
            .await
            .map_err(|source| GuardError::Unresolved {
                host: host.to_owned(),
                source,
            })?;
    for addr in addrs {
        if is_private(addr.ip()) {
            return Err(PrivateAddress {
                host: host.to_owned(),
                ip: addr.ip(),
            }
            .into());
        }
    }
    Ok(())
}

/// The refusal in an error chain, if the guard is why the call failed: it travels as the inner
/// error of an `io::Error` (what a resolver may return), which `source()` skips, so each
/// `io::Error` of the chain is opened as well.
pub(crate) fn find_private<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a PrivateAddress> {
    let mut next = Some(error);
    while let Some(cause) = next {
        if let Some(found) = cause.downcast_ref::<PrivateAddress>() {
            return Some(found);
        }
        if let Some(found) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<PrivateAddress>())
        {
            return Some(found);
        }
        next = cause.source();
    }
    None
}

/// A DNS resolver that refuses private addresses when the guard is on: the connect-time half
/// of the guard.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    inner: GaiResolver,
    refuse_private: bool,
}

impl GuardedResolver {
    pub(crate) fn new(refuse_private: bool) -> Self {
        GuardedResolver {
            inner: GaiResolver::new(),
            refuse_private,
        }
    }
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let mut inner = self.inner.clone();
        let refuse = self.refuse_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = inner.call(name).await?.collect();
            if refuse && let Some(addr) = addrs.iter().find(|a| is_private(a.ip())) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    PrivateAddress {
                        host,
                        ip: addr.ip(),
                    },
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refusals_are_typed() {
        match refuse_private("http://127.0.0.1:9/hook").await {
            Err(GuardError::Private(p)) => {
                assert_eq!(p.ip, IpAddr::from([127, 0, 0, 1]));
                assert_eq!(p.host, "127.0.0.1");
                assert!(
                    p.to_string().starts_with("127.0.0.1 is a private address;"),
                    "{p}"
                );
            }
            other => panic!("a private address: {other:?}"),
        }
        assert!(matches!(
            refuse_private("ftp://example.com/").await,
            Err(GuardError::Url(_))
        ));
    }

    #[test]
    fn the_refusal_is_found_by_type_not_by_kind() {
        let refusal = PrivateAddress {
            host: "inside".into(),
            ip: IpAddr::from([10, 0, 0, 1]),
        };
        // As a resolver returns it, under another error.
        #[derive(Debug, thiserror::Error)]
        #[error("connect failed")]
        struct Outer(#[source] std::io::Error);
        let wrapped = Outer(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            refusal.clone(),
        ));
        assert_eq!(find_private(&wrapped), Some(&refusal));
        // Another permission error is not the guard's.
        let other = Outer(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "socket not allowed",
        ));
        assert_eq!(find_private(&other), None);
    }
}
