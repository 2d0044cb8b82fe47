//! DNS rebinding (RFC 6455 §10.2 leaves it to the server): a page on a name the
//! attacker controls, whose address they then point at this server, is same-origin
//! with itself, so its `Origin` matches its `Host` and the Origin check alone lets it
//! in. Such a request carries the attacker's name in `Host`. The server answers only
//! to names it knows it has: `localhost` (and `*.localhost`), the machine's own names
//! (its host name, and that name under `.local` for mDNS), the names in its share
//! URLs, and every `--allow-host NAME`. An IP literal is always fine: rebinding needs
//! a name.

use crate::base::name_of;
use std::net::IpAddr;

/// Whether a request whose `Host` header is `host` may be served: `None` (no Host, as
/// in HTTP/1.0) and IP literals always, DNS names only if `known` lists them
/// (case-insensitive, a trailing dot ignored).
pub(crate) fn allowed(host: Option<&str>, known: &[String]) -> bool {
    let Some(host) = host else {
        return true;
    };
    let name = name_of(host);
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || known.iter().any(|k| k.eq_ignore_ascii_case(&name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::own_names;

    #[test]
    fn names_the_server_knows_and_ip_literals_pass_others_do_not() {
        let known = own_names(
            &["http://chat.example.org:3000/".into()],
            &["Extra.Example.".into()],
        );
        for ok in [
            "127.0.0.1:3000",
            "[::1]:3000",
            "192.168.1.20",
            "localhost:3000",
            "LOCALHOST",
            "app.localhost",
            "chat.example.org:3000",
            "extra.example",
            "extra.example.:80",
        ] {
            assert!(allowed(Some(ok), &known), "{ok}");
        }
        assert!(allowed(None, &known));
        for refused in [
            "rebind.example",
            "rebind.example:3000",
            "localhost.evil.com",
            "",
        ] {
            assert!(!allowed(Some(refused), &known), "{refused}");
        }
    }
}
