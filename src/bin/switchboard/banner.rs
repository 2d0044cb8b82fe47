//! The start-up banner: where to point a browser, LAN addresses included.

use std::net::{IpAddr, SocketAddr};
use switchboard::ServerHandle;

/// Tells people where to point their browser, LAN addresses included.
pub(crate) fn print(server: &ServerHandle, development_cert: bool) {
    println!(
        "switchboard {} is running. Open one of these in a browser:",
        env!("CARGO_PKG_VERSION")
    );
    let schemes = [
        ("http", "ws", server.local_addrs()),
        ("https", "wss", server.tls_local_addrs()),
    ];
    for (http, _, addrs) in &schemes {
        for addr in addrs.iter().flat_map(|&a| reachable_addrs(a)) {
            println!("  {http}://{addr}/");
        }
    }
    for (_, ws, addrs) in &schemes {
        // The last reachable address: a LAN address when there is one.
        if let Some(addr) = addrs.first().and_then(|&a| reachable_addrs(a).pop()) {
            println!("WebSocket: {ws}://{addr}/ws/chat, /ws/relay/{{room}}, /ws/echo");
        }
    }
    if development_cert && !server.tls_local_addrs().is_empty() {
        println!(
            "TLS uses the built-in development certificate (localhost only; trust certs/ca.pem, \
             or pass --cert and --key)."
        );
    }
    println!("Press Ctrl-C to stop.");
}

/// The addresses someone could type to reach `addr`: itself, or for a wildcard
/// address, loopback plus every address of this machine's interfaces.
fn reachable_addrs(addr: SocketAddr) -> Vec<SocketAddr> {
    if !addr.ip().is_unspecified() {
        return vec![addr];
    }
    let want_v6 = addr.is_ipv6();
    let mut out = vec![SocketAddr::new(
        if want_v6 {
            "::1".parse().ok()
        } else {
            "127.0.0.1".parse().ok()
        }
        .unwrap_or(IpAddr::from([127, 0, 0, 1])),
        addr.port(),
    )];
    if let Ok(interfaces) = if_addrs::get_if_addrs() {
        for iface in interfaces {
            let ip = iface.ip();
            let link_local_v6 = matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local());
            if !ip.is_loopback() && !link_local_v6 && (ip.is_ipv4() || want_v6) {
                out.push(SocketAddr::new(ip, addr.port()));
            }
        }
    }
    out
}
