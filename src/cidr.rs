//! The address ranges whose word about a client is believed: `--trust-proxy CIDR`.
//!
//! A reverse proxy in front of the server is the TCP peer of every client it carries,
//! and says who the client really is in `Forwarded` / `X-Forwarded-For`. Anyone can
//! write those headers, so they count only when the peer is a proxy the operator
//! named. The ranges are parsed by `ipnet`; a bare address stands for itself alone
//! (`/32`, `/128`), which is what `--trust-proxy 127.0.0.1` means to a reader.
//!
//! Addresses are compared in their canonical form: on a dual-stack listener an IPv4
//! peer shows up as `::ffff:127.0.0.1`, and it must match `127.0.0.1/32` all the same.

use ipnet::IpNet;
use std::net::IpAddr;

/// Parses one range, `10.0.0.0/8`, `2001:db8::/32` or a bare address; the error says
/// what is wrong, in lowercase, to be put after the setting's name.
pub(crate) fn parse(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        // `10.1.2.3/8` is taken as `10.0.0.0/8`, the range it names.
        return Ok(net.trunc());
    }
    match text.parse::<IpAddr>() {
        Ok(addr) => Ok(IpNet::from(addr.to_canonical())),
        Err(_) => Err(format!(
            "{text:?} is not an address range: write it as 10.0.0.0/8, 2001:db8::/32 or 127.0.0.1"
        )),
    }
}

/// The trusted ranges of one server. Empty by default: then nobody is trusted and the
/// forwarding headers are never read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trusted(Vec<IpNet>);

impl Trusted {
    /// Parses every range, naming the first bad one.
    pub(crate) fn parse_all<'a>(
        ranges: impl IntoIterator<Item = &'a String>,
    ) -> Result<Self, String> {
        ranges
            .into_iter()
            .map(|r| parse(r))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether no range is trusted at all (the common LAN case: nothing to look up).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `addr` lies in a trusted range.
    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|net| net.contains(&addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(ranges: &[&str]) -> Trusted {
        let owned: Vec<String> = ranges.iter().map(|r| r.to_string()).collect();
        Trusted::parse_all(&owned).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_of_both_families_and_bare_addresses() {
        let t = trusted(&["10.0.0.0/8", "2001:db8::/32", "127.0.0.1", "::1"]);
        assert!(t.contains(ip("10.200.3.4")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert!(t.contains(ip("2001:db8:ffff::1")));
        assert!(!t.contains(ip("2001:db9::1")));
        assert!(t.contains(ip("127.0.0.1")));
        assert!(
            !t.contains(ip("127.0.0.2")),
            "a bare address is itself alone"
        );
        assert!(t.contains(ip("::1")));
        assert!(!t.contains(ip("::2")));
    }

    #[test]
    fn an_ipv4_peer_on_a_dual_stack_socket_still_matches() {
        let t = trusted(&["192.168.0.0/16"]);
        assert!(t.contains(ip("::ffff:192.168.1.9")));
        let mapped = trusted(&["::ffff:10.0.0.1"]);
        assert!(mapped.contains(ip("10.0.0.1")));
    }

    #[test]
    fn host_bits_are_dropped_from_a_range() {
        assert!(trusted(&["10.1.2.3/8"]).contains(ip("10.9.9.9")));
    }

    #[test]
    fn bad_ranges_say_why() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "localhost",
            "10.0.0/8",
            "1.2.3.4/x",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("not an address range"), "{bad}: {err}");
        }
        assert!(Trusted::parse_all(&["10.0.0.0/8".into(), "nope".into()]).is_err());
        assert!(trusted(&[]).is_empty());
    }
}
