//! The private-address guard of outbound targets (API.md section 9): in production, a
//! subscription or reactor URL whose host resolves to a loopback, private or link-local address
//! is refused unless `NEXUS_ALLOW_PRIVATE_TARGETS=true`.

use std::net::IpAddr;

/// Whether an address is loopback, private, link-local or otherwise not on the internet:
/// unspecified and "this network" (`0.0.0.0/8`), carrier-grade NAT (`100.64.0.0/10`), multicast,
/// reserved (`240.0.0.0/4`), broadcast, IPv6 unique-local and link-local, and IPv4 addresses
/// embedded in IPv6 (mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`).
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
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
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
/// link-local (or the URL is not an `http`/`https` one).
pub async fn refuse_private(url: &str) -> Result<(), String> {
    let origin = nexus_store::target_origin(url).map_err(|e| e.to_string())?;
    let host_port = origin
        .split_once("://")
        .map_or(origin.as_str(), |(_, rest)| rest);
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    let addrs: Vec<IpAddr> = match tokio::net::lookup_host(host_port).await {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(e) => return Err(format!("cannot resolve {host}: {e}")),
    };
    if let Some(ip) = addrs.iter().find(|ip| is_private(**ip)) {
        return Err(format!(
            "{host} resolves to {ip}, a private address; set NEXUS_ALLOW_PRIVATE_TARGETS=true to allow"
        ));
    }
    Ok(())
}
