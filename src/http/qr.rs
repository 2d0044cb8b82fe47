//! `/qr.svg?text=…`: the QR code of an invite link as an SVG image, so that the page
//! can show it to a phone's camera with nothing fetched from elsewhere.
//!
//! It draws only this server's own links — `http(s)://AUTHORITY/#room` where the
//! authority is the one the request came to or one of the share URLs' — so it is no
//! free drawing service for anyone on the network, and each image is made once and
//! kept (a handful per room, at most [`CACHED`] in all).

use super::request::{self, Request};
use super::response::Response;
use crate::base::Context;
use crate::chat;
use crate::metrics::Rejection;
use std::sync::Arc;

/// Images kept; past this the cache starts again (links are few and cheap to redraw).
const CACHED: usize = 64;

/// Answers `/qr.svg`: the image, or `400` with the reason.
pub(crate) fn serve(
    req: &Request,
    query: Option<&str>,
    ctx: &Context,
) -> Result<Response, (Response, Rejection, String)> {
    let refuse =
        |reason: String| Err((Response::text(400, &reason), Rejection::BadRequest, reason));
    let text = match request::query_param(query, "text") {
        Some(Some(text)) if !text.is_empty() => text,
        _ => return refuse("/qr.svg needs ?text= with this server's invite link".to_owned()),
    };
    if !own_link(&text, req.header("Host"), &ctx.config.public_urls) {
        return refuse(
            "/qr.svg draws this server's own invite links only (http://this-server/#room)"
                .to_owned(),
        );
    }
    let cache = &ctx.qr_cache;
    let cached = cache.lock().ok().and_then(|c| c.get(&text).cloned());
    let svg = match cached {
        Some(svg) => svg,
        None => {
            // Cannot fail for a link this short: version 40 holds ~1,200 bytes.
            let Ok(code) = qrcode::QrCode::with_error_correction_level(&text, qrcode::EcLevel::M)
            else {
                return refuse("text too long for a QR code".to_owned());
            };
            let svg: Arc<[u8]> = code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .quiet_zone(true)
                .build()
                .into_bytes()
                .into();
            if let Ok(mut cache) = cache.lock() {
                if cache.len() >= CACHED {
                    cache.clear();
                }
                cache.insert(text, Arc::clone(&svg));
            }
            svg
        }
    };
    Ok(Response::new(200)
        .header("Cache-Control", "private, max-age=86400")
        .body("image/svg+xml", svg.to_vec()))
}

/// Whether `text` is an invite link to this server: `http` or `https`, the authority
/// the request came to (`host`) or a share URL's, the page's path, and a room name
/// (or nothing) after `#`.
fn own_link(text: &str, host: Option<&str>, public_urls: &[String]) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    if !matches!(scheme, "http" | "https") {
        return false;
    }
    let (before_hash, room) = rest.split_once('#').unwrap_or((rest, ""));
    let Some((authority, path)) = before_hash.split_once('/') else {
        return false;
    };
    if !matches!(path, "" | "index.html") || (!room.is_empty() && chat::valid_room(room).is_err()) {
        return false;
    }
    let authority_of = |url: &str| -> Option<String> {
        let rest = url.split_once("://")?.1;
        Some(rest.split(['/', '#', '?']).next()?.to_ascii_lowercase())
    };
    let authority = authority.to_ascii_lowercase();
    host.is_some_and(|h| h.trim().eq_ignore_ascii_case(&authority))
        || public_urls
            .iter()
            .filter_map(|u| authority_of(u))
            .any(|a| a == authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_server_s_invite_links_are_drawn() {
        let urls = ["http://192.168.1.20:3000/".to_owned()];
        let host = Some("localhost:3000");
        for ok in [
            "http://192.168.1.20:3000/#rust",
            "http://192.168.1.20:3000/",
            "http://localhost:3000/#lobby",
            "https://LOCALHOST:3000/index.html#a.b-c_d",
        ] {
            assert!(own_link(ok, host, &urls), "{ok}");
        }
        for refused in [
            "http://evil.example/#rust",
            "http://192.168.1.20:3001/#rust",
            "javascript://192.168.1.20:3000/",
            "http://192.168.1.20:3000/elsewhere",
            "http://192.168.1.20:3000/#no spaces",
            "http://192.168.1.20:3000",
            "hello",
            "",
        ] {
            assert!(!own_link(refused, host, &urls), "{refused}");
        }
    }
}
