//! Sharing the server on a LAN: the addresses to share (`/info`) and the QR code of an
//! invite link (`/qr.svg`), decoded by a real QR reader (`zbarimg`).

mod common;

use common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn info_lists_the_addresses_to_share_in_order() {
    let server = start_with(|b| {
        b.public_url("http://192.168.1.20:3000/")
            .public_url("https://192.168.1.20:3443/")
    });
    let response = get(server.local_addr(), "/info");
    assert_eq!(status(&response), 200);
    assert_eq!(header(&response, "Content-Type"), Some("application/json"));
    let info: serde_json::Value = serde_json::from_str(body(&response)).expect("JSON");
    assert_eq!(
        info["urls"],
        json!(["http://192.168.1.20:3000/", "https://192.168.1.20:3443/"])
    );
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn info_of_an_embedded_server_lists_nothing_to_share() {
    let server = start();
    let info: serde_json::Value =
        serde_json::from_str(body(&get(server.local_addr(), "/info"))).expect("JSON");
    assert_eq!(info["urls"], json!([]));
}

/// Decodes the QR code in an image file with zbarimg; `None` when it is not installed.
fn decode_qr(test: &str, image: &std::path::Path) -> Option<String> {
    let zbarimg = tool_or_skip(test, "zbarimg", "SWITCHBOARD_REQUIRE_TOOLS")?;
    let mut child = Command::new(zbarimg)
        .args(["--quiet", "--raw"])
        .arg(image)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("zbarimg runs");
    let exit = wait_exit(&mut child, Duration::from_secs(30)).expect("zbarimg finishes");
    let output = child.wait_with_output().expect("zbarimg's output");
    assert!(
        exit.success(),
        "zbarimg found no QR code: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned(),
    )
}

/// `text` as a query value, every byte but unreserved ones percent-encoded.
fn query_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[test]
fn qr_svg_decodes_back_to_the_invite_link() {
    let server = start_with(|b| b.public_url("http://192.168.1.20:3000/"));
    let invite = "http://192.168.1.20:3000/#rust-lang_2.0";
    let response = get(
        server.local_addr(),
        &format!("/qr.svg?text={}", query_encode(invite)),
    );
    assert_eq!(status(&response), 200);
    assert_eq!(header(&response, "Content-Type"), Some("image/svg+xml"));
    let svg = body(&response);
    assert!(svg.contains("<svg"), "an SVG image: {svg:.100}");
    let file = std::env::temp_dir().join(format!(
        "switchboard-qr-{}-{}.svg",
        std::process::id(),
        server.local_addr().port()
    ));
    std::fs::write(&file, svg).expect("write the image");
    let decoded = decode_qr("qr_svg_decodes_back_to_the_invite_link", &file);
    let _ = std::fs::remove_file(&file);
    if let Some(decoded) = decoded {
        assert_eq!(decoded, invite);
    }
}

#[test]
fn qr_svg_draws_the_link_of_the_address_the_page_was_opened_on() {
    let server = start();
    let own = format!("http://localhost:{}/#lobby", server.local_addr().port());
    let request = format!(
        "GET /qr.svg?text={} HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
        query_encode(&own),
        server.local_addr().port()
    );
    let first = raw(server.local_addr(), request.as_bytes());
    assert_eq!(status(&first), 200, "{first}");
    let again = raw(server.local_addr(), request.as_bytes());
    assert_eq!(body(&first), body(&again), "drawn once, served the same");
}

#[test]
fn qr_svg_draws_no_other_text_and_anyone_else_is_unaffected() {
    let server = start_with(|b| b.public_url("http://192.168.1.20:3000/"));
    for text in [
        "a".repeat(512),
        "hello".to_owned(),
        "http://evil.example/#rust".to_owned(),
        "http://192.168.1.20:3001/#rust".to_owned(),
        "http://192.168.1.20:3000/somewhere-else".to_owned(),
    ] {
        let response = assert_refused(
            &format!(
                "GET /qr.svg?text={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
                query_encode(&text)
            ),
            400,
        );
        assert!(body(&response).contains("own invite links"), "{response}");
    }
    let fine = get(
        server.local_addr(),
        &format!(
            "/qr.svg?text={}",
            query_encode("http://192.168.1.20:3000/#ok")
        ),
    );
    assert_eq!(status(&fine), 200);
}

#[test]
fn qr_svg_without_text_is_400() {
    assert_refused("GET /qr.svg HTTP/1.1\r\nHost: localhost\r\n\r\n", 400);
    assert_refused("GET /qr.svg?text= HTTP/1.1\r\nHost: localhost\r\n\r\n", 400);
    assert_refused(
        "GET /qr.svg?text=%FF HTTP/1.1\r\nHost: localhost\r\n\r\n",
        400,
    );
}
