//! Who is really on the other end when a reverse proxy is: the proxy's
//! `X-Forwarded-For`/`-Proto`/`-Host`, or its `Forwarded` (RFC 7239), believed only
//! from a peer in `--trust-proxy`.
//!
//! **One header, the one the proxy writes.** A proxy adds its own header and passes
//! the rest of the client's request through, the other forwarding header included:
//! nginx, as `deploy/nginx.conf` has it, writes `X-Forwarded-*` and forwards a
//! client's `Forwarded` untouched unless told to clear it. So only the kind the
//! operator says the proxy writes (`--proxy-header`, `X-Forwarded-*` by default) is
//! read; the other could be anyone's and is ignored.
//!
//! **The rightmost untrusted hop.** A proxy appends the address it got the request
//! from, so the list reads client first, nearest proxy last, and everything left of
//! the first hop we do not trust may have been written by anyone. The client is
//! therefore the rightmost untrusted hop: walk from the right (starting at our TCP
//! peer, trusted), skip trusted proxies, stop at the first address outside them. The
//! scheme and host are the ones our peer wrote (the rightmost `X-Forwarded-Proto`/
//! `-Host`, or the chosen `Forwarded` element's `proto`/`host`).
//!
//! **No name, no trust.** A hop that is not an address (`unknown`, an obfuscated
//! `_name`, garbage) ends the walk: the client is then counted under the last trusted
//! hop, the proxy, so that per-client limits still hold (everyone the proxy cannot
//! name shares one budget, which only protects the rest), but it is not taken for
//! that proxy in any other way.
//!
//! **This machine.** What is open to this machine only (`/metrics` while a password
//! is set) asks [`Peer::local`], never the address: a request is local when it never
//! left the machine, that is when our peer is loopback and the walk ended on an
//! address, and the client and every hop after it are loopback. A trusted nginx on
//! this machine that names `127.0.0.1` is believed (it is the authority on where it
//! got the request), but `unknown`, a name that is no address, a loopback client of a
//! proxy on another machine, or a request that also carries the forwarding header we
//! do not read (someone forwarded it, we cannot tell from where) is not local.
//!
//! Nothing here indexes or unwraps peer bytes: whatever fails to parse is simply not
//! believed.

use super::request::Request;
use crate::base::{Context, Peer, Transport};
use crate::cidr::Trusted;
use crate::config::ProxyHeader;
use std::net::{IpAddr, SocketAddr};

/// What a trusted proxy says about the request it passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forwarded {
    /// The client: its address, and its port when the proxy gave one (else 0). The
    /// last trusted hop when the proxy named no address.
    pub client: SocketAddr,
    /// Whether the client spoke https/wss to the proxy, when the proxy said.
    pub secure: Option<bool>,
    /// The `Host` the client sent the proxy, when the proxy said and it is sane.
    pub host: Option<String>,
    /// Whether the request never left this machine (see the module's doc).
    pub local: bool,
}

/// One hop of a forwarding chain: its address (`None` when it is not one), and what
/// the proxy that wrote it says about scheme and host.
#[derive(Debug, Default)]
struct Hop {
    node: Option<(IpAddr, u16)>,
    secure: Option<bool>,
    host: Option<String>,
}

/// `peer` as the rest of the front should see it: the client a trusted proxy names,
/// with the scheme it used, and `req` made to read as that client sent it
/// ([`apply`]); `peer` itself when it is no trusted proxy. The trace, if on, goes on
/// under the client's name.
pub(crate) fn client_of<S: Transport>(
    stream: &mut S,
    req: &mut Request,
    peer: Peer,
    ctx: &Context,
) -> Peer {
    let Some(forwarded) = resolve(req, peer.addr, &ctx.trusted, ctx.config.proxy_header) else {
        return peer;
    };
    apply(req, &forwarded);
    let secure = forwarded.secure.unwrap_or(peer.secure);
    let client = forwarded.client;
    log::debug!(
        "conn {} {client}: forwarded by {} ({}{})",
        peer.id,
        peer.addr,
        if secure { "https" } else { "http" },
        if forwarded.local {
            ", this machine"
        } else {
            ""
        }
    );
    if ctx.config.trace {
        let transport = if peer.secure { "tls" } else { "tcp" };
        stream.relabel(format!(
            "conn {} {client} via {} {transport}",
            peer.id, peer.addr
        ));
    }
    Peer {
        addr: client,
        secure,
        local: forwarded.local,
        ..peer
    }
}

/// What the forwarding headers of `req` say, if `peer` is a trusted proxy that
/// writes the `header` kind; `None` otherwise, and then nothing about the request
/// changes. A trusted peer that sent no such header is its own client.
pub(crate) fn resolve(
    req: &Request,
    peer: SocketAddr,
    trusted: &Trusted,
    header: ProxyHeader,
) -> Option<Forwarded> {
    if trusted.is_empty() || !trusted.contains(peer.ip()) {
        return None;
    }
    let (hops, secure, host, ignored) = match header {
        ProxyHeader::Forwarded => {
            let hops: Vec<Hop> = joined(req, "Forwarded")
                .map(|list| {
                    split_outside_quotes(&list, ',')
                        .iter()
                        .map(|e| element(e))
                        .collect()
                })
                .unwrap_or_default();
            (hops, None, None, "X-Forwarded-For")
        }
        ProxyHeader::XForwarded => {
            let hops = joined(req, "X-Forwarded-For")
                .map(|list| {
                    list.split(',')
                        .map(|n| Hop {
                            node: node(n.trim()),
                            ..Hop::default()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let secure = rightmost(req, "X-Forwarded-Proto").and_then(|p| scheme(&p));
            let host = rightmost(req, "X-Forwarded-Host").filter(|h| sane_host(h));
            (hops, secure, host, "Forwarded")
        }
    };
    let walked = walk(&hops, peer, trusted);
    // The scheme and host of the hop we settled on, else of the nearest one (which
    // our peer wrote); the X-Forwarded-* ones only exist for the whole request.
    let said = walked
        .at
        .or(hops.len().checked_sub(1))
        .and_then(|i| hops.get(i));
    let loopback = |ip: IpAddr| ip.to_canonical().is_loopback();
    let local = walked.named
        && joined(req, ignored).is_none()
        && loopback(peer.ip())
        && hops
            .iter()
            .skip(walked.at.unwrap_or(hops.len()))
            .all(|hop| hop.node.is_some_and(|(ip, _)| loopback(ip)));
    Some(Forwarded {
        client: walked.client,
        secure: secure.or(said.and_then(|h| h.secure)),
        host: host.or_else(|| said.and_then(|h| h.host.clone())),
        local,
    })
}

/// Where a walk down a forwarding chain ended.
#[derive(Debug)]
struct Walked {
    /// The rightmost untrusted hop, else the last trusted one.
    client: SocketAddr,
    /// The index of `client` in the chain; `None` when it is our peer itself.
    at: Option<usize>,
    /// `false` when a hop that is not an address ended the walk: then the chain does
    /// not say who the client is, and `client` is only the proxy that passed it on.
    named: bool,
}

/// The client of a chain: the rightmost untrusted hop.
fn walk(hops: &[Hop], peer: SocketAddr, trusted: &Trusted) -> Walked {
    let mut walked = Walked {
        client: peer,
        at: None,
        named: true,
    };
    for (i, hop) in hops.iter().enumerate().rev() {
        let Some((ip, port)) = hop.node else {
            walked.named = false;
            break;
        };
        walked.client = SocketAddr::new(ip, port);
        walked.at = Some(i);
        if !trusted.contains(ip) {
            break;
        }
    }
    walked
}

/// Makes the request read as the client sent it to the proxy, so that every check
/// after this one (the Origin check above all) needs to know nothing about
/// proxies: `Host` becomes the forwarded host, and the scheme is noted, so that an
/// `http://` origin does not pass for an `https://` page.
pub(crate) fn apply(req: &mut Request, forwarded: &Forwarded) {
    req.forwarded_secure = forwarded.secure;
    if let Some(host) = &forwarded.host {
        req.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("Host"));
        req.headers
            .push(("Host".to_owned(), host.clone().into_bytes()));
    }
}

/// Every value of header `name`, joined by commas as RFC 9110 §5.3 allows; `None`
/// when there is none (or only empty ones). Bytes that are not text become a hop
/// that parses as nothing.
fn joined(req: &Request, name: &str) -> Option<String> {
    let values: Vec<&str> = req
        .header_values(name)
        .map(|v| std::str::from_utf8(v).unwrap_or("\u{fffd}").trim())
        .filter(|v| !v.is_empty())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The last entry of a comma-separated header: the one the nearest proxy wrote.
fn rightmost(req: &Request, name: &str) -> Option<String> {
    let list = joined(req, name)?;
    let last = list.rsplit(',').next()?.trim();
    (!last.is_empty()).then(|| last.to_owned())
}

/// One `forwarded-element` (RFC 7239 §4): `for=…;proto=…;host=…`, in any order and
/// case. `by` is about the proxy, not the client, and is not needed.
fn element(text: &str) -> Hop {
    let mut hop = Hop::default();
    for pair in split_outside_quotes(text, ';') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let Some(value) = unquote(value.trim()) else {
            // A broken quoted string: believe nothing of this element.
            return Hop::default();
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "for" => hop.node = node(&value),
            "proto" => hop.secure = scheme(&value),
            "host" => hop.host = Some(value).filter(|h| sane_host(h)),
            _ => {}
        }
    }
    hop
}

/// Splits on `sep` where it is not inside a quoted string. An unterminated quote runs
/// to the end, and [`unquote`] then refuses that piece.
fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(text.get(start..i).unwrap_or(""));
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(text.get(start..).unwrap_or(""));
    parts
}

/// A `token` as is, a `quoted-string` (RFC 9110 §5.6.4) without its quotes and
/// escapes; `None` for a quoted string that does not end.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_owned());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None
}

/// A node (RFC 7239 §6): `192.0.2.43`, `192.0.2.43:47011`, `[2001:db8::17]`,
/// `[2001:db8::17]:4711`, or, as `X-Forwarded-For` often has it, a bare IPv6
/// address. `unknown` and obfuscated names (`_hidden`) are no address; an
/// obfuscated port (`:_x`) is as good as none.
fn node(text: &str) -> Option<(IpAddr, u16)> {
    // RFC 7239 §6.3: a number, or an obfuscated port (`_` first), which is none.
    let port = |p: &str| match p.parse::<u16>() {
        Ok(port) => Some(port),
        Err(_) if p.starts_with('_') => Some(0),
        Err(_) => None,
    };
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip.to_canonical(), 0));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: std::net::Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => 0,
            after => port(after.strip_prefix(':')?)?,
        };
        return Some((IpAddr::V6(ip).to_canonical(), port));
    }
    let (ip, p) = text.split_once(':')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    Some((IpAddr::V4(ip), port(p)?))
}

/// Whether a forwarded scheme is a secure one; `None` for a scheme we do not know.
fn scheme(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "https" | "wss" => Some(true),
        "http" | "ws" => Some(false),
        _ => None,
    }
}

/// Whether a forwarded host looks like a `Host` value (RFC 9110 §7.2: a host name or
/// address literal and maybe a port), so that junk never reaches the Origin check.
fn sane_host(host: &str) -> bool {
    (1..=255).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{Parsed, parse};

    fn req(headers: &str) -> Request {
        let head = format!("GET /ws/echo HTTP/1.1\r\nHost: proxy.internal\r\n{headers}\r\n");
        match parse(head.as_bytes()) {
            Ok(Parsed::Complete(r, _)) => r,
            _ => panic!("no head in {head:?}"),
        }
    }

    fn trusted(ranges: &[&str]) -> Trusted {
        let owned: Vec<String> = ranges.iter().map(|r| r.to_string()).collect();
        Trusted::parse_all(&owned).unwrap()
    }

    const PROXY: &str = "127.0.0.1:40000";
    const X: ProxyHeader = ProxyHeader::XForwarded;
    const RFC: ProxyHeader = ProxyHeader::Forwarded;

    /// What a trusted nginx on loopback writing `header` would make us see.
    fn resolved(header: ProxyHeader, headers: &str) -> Forwarded {
        let t = trusted(&["127.0.0.1/32", "10.0.0.0/8"]);
        resolve(&req(headers), PROXY.parse().unwrap(), &t, header).expect("trusted")
    }

    /// The client address a trusted nginx on loopback would make us see.
    fn client_by(header: ProxyHeader, headers: &str) -> String {
        resolved(header, headers).client.to_string()
    }

    /// The same, with the default `X-Forwarded-*`.
    fn client(headers: &str) -> String {
        client_by(X, headers)
    }

    #[test]
    fn an_untrusted_peer_is_not_believed() {
        let r = req("X-Forwarded-For: 1.2.3.4\r\nForwarded: for=5.6.7.8\r\n");
        let t = trusted(&["10.0.0.0/8"]);
        for header in [X, RFC] {
            assert_eq!(
                resolve(&r, "192.168.1.9:5000".parse().unwrap(), &t, header),
                None
            );
            assert_eq!(
                resolve(&r, PROXY.parse().unwrap(), &Trusted::default(), header),
                None
            );
        }
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        assert_eq!(client("X-Forwarded-For: 203.0.113.7\r\n"), "203.0.113.7:0");
        // A client that writes its own header only pushes its lie further left.
        assert_eq!(
            client("X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n"),
            "203.0.113.7:0"
        );
        // A chain of trusted proxies is walked through.
        assert_eq!(
            client("X-Forwarded-For: 198.51.100.1, 203.0.113.7, 10.1.1.1\r\n"),
            "203.0.113.7:0"
        );
        // Repeated header lines are one list, in order.
        assert_eq!(
            client("X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.7\r\n"),
            "203.0.113.7:0"
        );
        assert_eq!(
            client("X-Forwarded-For: 2001:db8::9\r\n"),
            "[2001:db8::9]:0"
        );
        // Every hop trusted: the leftmost, the furthest any trusted proxy saw.
        assert_eq!(
            client("X-Forwarded-For: 10.3.3.3, 10.2.2.2\r\n"),
            "10.3.3.3:0"
        );
    }

    #[test]
    fn a_trusted_peer_without_headers_is_its_own_client() {
        assert_eq!(client(""), PROXY);
        assert_eq!(client("X-Forwarded-For: \r\n"), PROXY);
        assert_eq!(client_by(RFC, ""), PROXY);
    }

    #[test]
    fn what_is_not_an_address_ends_the_walk_at_the_last_trusted_hop() {
        for junk in [
            "unknown",
            "_hidden",
            "999.1.1.1",
            "x y",
            "[::1",
            "1.2.3.4:x:y",
        ] {
            let f = resolved(X, &format!("X-Forwarded-For: {junk}\r\n"));
            assert_eq!(f.client.to_string(), PROXY, "{junk}");
            assert!(!f.local, "{junk} is nobody, not this machine");
        }
        let f = resolved(X, "X-Forwarded-For: 203.0.113.7, garbage, 10.2.2.2\r\n");
        assert_eq!(
            (f.client.to_string().as_str(), f.local),
            ("10.2.2.2:0", false)
        );
        for junk in [
            "for=\"[2001:db8::1",
            "for=\"unterminated",
            ";;,,=;for",
            "for=unknown",
            "proto=https",
        ] {
            let f = resolved(RFC, &format!("Forwarded: {junk}\r\n"));
            assert_eq!(
                (f.client.to_string().as_str(), f.local),
                (PROXY, false),
                "{junk}"
            );
        }
    }

    #[test]
    fn forwarded_nodes_of_rfc_7239() {
        // §4 and §6 examples.
        assert_eq!(client_by(RFC, "Forwarded: for=\"_gazonk\"\r\n"), PROXY);
        assert_eq!(
            client_by(RFC, "Forwarded: For=\"[2001:db8:cafe::17]:4711\"\r\n"),
            "[2001:db8:cafe::17]:4711"
        );
        assert_eq!(
            client_by(
                RFC,
                "Forwarded: for=192.0.2.60;proto=http;by=203.0.113.43\r\n"
            ),
            "192.0.2.60:0"
        );
        assert_eq!(
            client_by(RFC, "Forwarded: for=192.0.2.43, for=198.51.100.17\r\n"),
            "198.51.100.17:0"
        );
        assert_eq!(
            client_by(RFC, "Forwarded: for=192.0.2.43:_port\r\n"),
            "192.0.2.43:0"
        );
        assert_eq!(
            client_by(RFC, "Forwarded: for=\"192.0.2.43:8080\"\r\n"),
            "192.0.2.43:8080"
        );
    }

    #[test]
    fn only_the_header_the_proxy_writes_is_read() {
        let both = "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: https\r\n\
                    Forwarded: for=192.0.2.1;proto=http;host=evil.example\r\n";
        let f = resolved(X, both);
        assert_eq!(
            (f.client.to_string().as_str(), f.secure, f.host),
            ("198.51.100.1:0", Some(true), None),
            "a client's Forwarded passed on by nginx says nothing"
        );
        let f = resolved(RFC, both);
        assert_eq!(
            (f.client.to_string().as_str(), f.secure),
            ("192.0.2.1:0", Some(false)),
            "and X-Forwarded-* say nothing to a server behind a Forwarded proxy"
        );
        assert_eq!(client("Forwarded: for=192.0.2.1\r\n"), PROXY);
        assert_eq!(client_by(RFC, "X-Forwarded-For: 192.0.2.1\r\n"), PROXY);
    }

    #[test]
    fn only_a_request_that_never_left_this_machine_is_local() {
        let local = |header, headers: &str| resolved(header, headers).local;
        // Our peer itself (a local Prometheus scraping the node directly).
        assert!(local(X, ""));
        // A trusted nginx here, naming a client here: the proxy is the authority.
        assert!(local(X, "X-Forwarded-For: 127.0.0.1\r\n"));
        assert!(
            local(X, "X-Forwarded-For: 127.0.0.5\r\n"),
            "untrusted, yet here"
        );
        assert!(local(RFC, "Forwarded: for=127.0.0.1\r\n"));
        assert!(local(RFC, "Forwarded: for=\"[::1]\"\r\n"));
        // Anyone else, named or not.
        assert!(!local(X, "X-Forwarded-For: 203.0.113.7\r\n"));
        assert!(!local(X, "X-Forwarded-For: 127.0.0.1, 203.0.113.7\r\n"));
        assert!(!local(X, "X-Forwarded-For: 127.0.0.1, unknown\r\n"));
        // Through a proxy on another machine: its loopback is not ours.
        assert!(!local(X, "X-Forwarded-For: 127.0.0.1, 10.0.0.2\r\n"));
        // A forwarding header we do not read: forwarded by someone, from who knows.
        assert!(!local(X, "Forwarded: for=127.0.0.1\r\n"));
        assert!(!local(X, "Forwarded: for=unknown\r\n"));
        assert!(!local(
            X,
            "X-Forwarded-For: 127.0.0.1\r\nForwarded: for=127.0.0.1\r\n"
        ));
        assert!(!local(RFC, "X-Forwarded-For: 127.0.0.1\r\n"));
        // Our peer not on loopback, whatever it says.
        let t = trusted(&["10.0.0.0/8"]);
        let r = req("X-Forwarded-For: 127.0.0.1\r\n");
        let f = resolve(&r, "10.0.0.9:5000".parse().unwrap(), &t, X).unwrap();
        assert_eq!(
            (f.client.to_string().as_str(), f.local),
            ("127.0.0.1:0", false)
        );
        // An IPv4 peer on a dual-stack socket.
        let t = trusted(&["127.0.0.1"]);
        let f = resolve(&req(""), "[::ffff:127.0.0.1]:9".parse().unwrap(), &t, X).unwrap();
        assert!(f.local);
    }

    #[test]
    fn scheme_and_host_come_from_the_nearest_proxy() {
        let t = trusted(&["127.0.0.1"]);
        let peer = PROXY.parse().unwrap();
        let r = req(
            "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: http, https\r\n\
             X-Forwarded-Host: evil.example, chat.example.com:8443\r\n",
        );
        let f = resolve(&r, peer, &t, X).unwrap();
        assert_eq!(f.secure, Some(true));
        assert_eq!(f.host.as_deref(), Some("chat.example.com:8443"));
        let r = req("Forwarded: for=203.0.113.7;proto=https;host=\"chat.example.com\"\r\n");
        let f = resolve(&r, peer, &t, RFC).unwrap();
        assert_eq!(
            (f.secure, f.host.as_deref()),
            (Some(true), Some("chat.example.com"))
        );
        let r = req("X-Forwarded-Proto: gopher\r\nX-Forwarded-Host: a b\r\n");
        let f = resolve(&r, peer, &t, X).unwrap();
        assert_eq!((f.secure, f.host), (None, None), "junk is not believed");
    }

    #[test]
    fn the_request_then_reads_as_sent_to_the_proxy() {
        let applied = |headers: &str| {
            let mut r = req(headers);
            let f = resolve(&r, PROXY.parse().unwrap(), &trusted(&["127.0.0.1"]), X).unwrap();
            apply(&mut r, &f);
            assert_eq!(r.header_values("Host").count(), 1);
            (r.header("Host").map(str::to_owned), r.forwarded_secure)
        };
        assert_eq!(
            applied("X-Forwarded-Host: chat.example.com\r\nX-Forwarded-Proto: https\r\n"),
            (Some("chat.example.com".to_owned()), Some(true))
        );
        assert_eq!(
            applied("X-Forwarded-Proto: http\r\n"),
            (Some("proxy.internal".to_owned()), Some(false)),
            "no forwarded host: our own Host"
        );
        assert_eq!(applied(""), (Some("proxy.internal".to_owned()), None));
    }

    #[test]
    fn quoted_strings_and_splitting() {
        assert_eq!(unquote("\"a\\\"b\"").as_deref(), Some("a\"b"));
        assert_eq!(unquote("\"a\"junk"), None);
        assert_eq!(unquote("\"a"), None);
        assert_eq!(
            split_outside_quotes("for=\"a,b\";x, for=c", ','),
            ["for=\"a,b\";x", " for=c"]
        );
    }
}
