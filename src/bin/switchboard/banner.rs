//! The start-up banner: the address to share first (a LAN address, with its QR code for
//! phones), then every other address this machine answers on.

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use switchboard::ServerHandle;

/// What the banner shows besides the addresses.
pub(crate) struct Options {
    /// The built-in development certificate is in use.
    pub development_cert: bool,
    /// Print the QR code of the address to share (when stdout is a terminal).
    pub qr: bool,
    /// The node is one of a cluster on Redis (`--redis`).
    pub cluster: bool,
}

/// Tells people where to point their browser: the LAN address first, marked as the one
/// to share.
pub(crate) fn print(server: &ServerHandle, options: &Options) {
    println!("switchboard {} is running.", env!("CARGO_PKG_VERSION"));
    let http = urls("http", server.local_addrs());
    let https = urls("https", server.tls_local_addrs());
    let (lan, local): (Vec<_>, Vec<_>) = http.iter().chain(&https).partition(|u| u.lan);
    match lan.first() {
        Some(share) => {
            println!("Share this address; anyone on your network can open it:");
            println!("  {}", share.url);
            if options.qr && std::io::stdout().is_terminal() {
                print_qr(&share.url);
            }
            println!("Also here:");
            for url in lan.iter().skip(1).chain(&local) {
                println!("  {}", url.url);
            }
        }
        None => {
            println!("Open one of these in a browser on this machine (no LAN address to share):");
            for url in &local {
                println!("  {}", url.url);
            }
        }
    }
    let ws = |http: &[Url]| {
        http.iter()
            .find(|u| u.lan)
            .or(http.first())
            .map(|u| u.url.clone())
    };
    for (scheme, url) in [("ws", ws(&http)), ("wss", ws(&https))] {
        if let Some(url) = url
            && let Some(rest) = url.split_once("://").map(|(_, rest)| rest)
        {
            println!("WebSocket: {scheme}://{rest}ws/chat, /ws/relay/{{room}}, /ws/echo");
        }
    }
    if options.development_cert && !server.tls_local_addrs().is_empty() {
        println!(
            "TLS uses the built-in development certificate (localhost only; trust certs/ca.pem, \
             or pass --cert and --key)."
        );
    }
    match server.store_path() {
        Some(path) => println!("Chat history is kept in {}.", path.display()),
        None if options.cluster => {
            println!("Chat history is kept in Redis, shared by every node of the cluster.")
        }
        None => println!("Chat history is kept in memory only: it is gone when the server stops."),
    }
    println!("Press Ctrl-C to stop.");
}

/// The QR code of `url`, two modules per character cell, light on dark as terminals
/// usually are.
fn print_qr(url: &str) {
    let Ok(code) = QrCode::new(url) else {
        return;
    };
    let image = code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    println!("{image}");
}

/// An address to open, and whether other machines can reach it.
#[derive(Debug, Clone)]
struct Url {
    url: String,
    lan: bool,
}

fn urls(scheme: &str, addrs: &[SocketAddr]) -> Vec<Url> {
    addrs
        .iter()
        .flat_map(|&a| reachable_addrs(a))
        .map(|addr| Url {
            url: format!("{scheme}://{addr}/"),
            lan: !addr.ip().is_loopback(),
        })
        .collect()
}

/// The addresses of the machine that other machines on the LAN can use to reach a
/// server listening on `listen` (resolved like `--listen`), as URLs with `scheme`;
/// none when it listens on loopback only, or on port 0 (not known before binding).
pub(crate) fn lan_urls(scheme: &str, listen: &str) -> Vec<String> {
    let Some(addr) = listen.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return Vec::new();
    };
    if addr.port() == 0 {
        return Vec::new();
    }
    urls(scheme, &[addr])
        .into_iter()
        .filter(|u| u.lan)
        .map(|u| u.url)
        .collect()
}

/// The addresses someone could type to reach `addr`: itself, or for a wildcard
/// address, loopback plus every address of this machine's interfaces.
fn reachable_addrs(addr: SocketAddr) -> Vec<SocketAddr> {
    if !addr.ip().is_unspecified() {
        return vec![addr];
    }
    let want_v6 = addr.is_ipv6();
    let loopback = if want_v6 {
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::from(std::net::Ipv4Addr::LOCALHOST)
    };
    let mut out = vec![SocketAddr::new(loopback, addr.port())];
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
