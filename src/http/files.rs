//! `GET` and `HEAD /files/{id}/{name}`: a shared file's bytes, streamed from disk.
//!
//! The id finds the file ([`crate::files`]); the name is only what a download is
//! saved as. How a file is served is decided by its bytes, never by what its sender
//! called it: PNG, JPEG, GIF and WebP are pictures, shown inline; anything else (SVG
//! and HTML among them) is `application/octet-stream`, an attachment. Every answer
//! is `nosniff` and sandboxed, so a file opened on its own can run nothing. A file
//! never changes under its id: `ETag` is the id, and caches may keep it for good.

use super::request::Request;
use super::response::Response;
use crate::base::Transport;
use crate::files::{Files, picture_type};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// What a file request gets: the head, and the bytes to stream after it, if any.
pub(super) struct Answer {
    pub response: Response,
    body: Option<(File, u64)>,
}

impl Answer {
    fn only(response: Response) -> Self {
        Answer {
            response,
            body: None,
        }
    }

    /// Writes the head, then the body (unless the request was `HEAD`), in pieces.
    pub(super) fn send<S: Transport>(self, stream: &mut S, head_only: bool) -> io::Result<()> {
        let response = if head_only {
            self.response.head_only()
        } else {
            self.response
        };
        stream.write_all(&response.to_bytes())?;
        let Some((file, len)) = self.body.filter(|_| !head_only) else {
            return Ok(());
        };
        let copied = io::copy(&mut file.take(len), stream)?;
        if copied < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than it was",
            ));
        }
        Ok(())
    }
}

/// The answer to `GET /files/{rest}` (or `HEAD`), `rest` being `{id}/{name}`.
pub(super) fn answer(req: &Request, rest: &str, files: &Files) -> Answer {
    let (id, name) = rest.split_once('/').unwrap_or((rest, ""));
    let not_found = || Answer::only(Response::text(404, "no such file"));
    let Some(mut file) = files.open_id(id) else {
        return not_found();
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return not_found();
    };
    let etag = format!("\"{id}\"");
    let common = |response: Response| {
        response
            .header("ETag", etag.clone())
            .header("Cache-Control", "private, max-age=31536000, immutable")
            .header("Accept-Ranges", "bytes")
    };
    if req
        .header("If-None-Match")
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Answer::only(common(Response::new(304)));
    }
    let mut head = [0u8; 12];
    let read = read_head(&mut file, &mut head);
    let picture = picture_type(&head[..read]);
    let range = match req.header("Range").map(|r| byte_range(r, len)) {
        None | Some(Range::Ignored) => None,
        Some(Range::Within(start, end)) => Some((start, end)),
        Some(Range::Unsatisfiable) => {
            return Answer::only(
                common(Response::text(416, "the range is outside the file"))
                    .header("Content-Range", format!("bytes */{len}")),
            );
        }
    };
    let (status, start, count) = match range {
        Some((start, end)) => (206, start, end - start + 1),
        None => (200, 0, len),
    };
    if file.seek(SeekFrom::Start(start)).is_err() {
        return not_found();
    }
    let mut response = common(Response::streamed(status, count))
        .header(
            "Content-Type",
            picture.unwrap_or("application/octet-stream"),
        )
        .header("Content-Disposition", disposition(picture.is_some(), name))
        // Opened on its own, a file is a document of nothing: no script, no style
        // from anywhere, in a sandbox.
        .header("Content-Security-Policy", "default-src 'none'; sandbox");
    if status == 206 {
        response = response.header(
            "Content-Range",
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    Answer {
        response,
        body: Some((file, count)),
    }
}

/// Reads up to `buf.len()` bytes from the start of `file`; how many came.
fn read_head(file: &mut File, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

/// A `Range` header, against a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// Bytes `start..=end`.
    Within(u64, u64),
    /// A range the file cannot satisfy: `416`.
    Unsatisfiable,
    /// Not one byte range this server serves (another unit, several ranges, a
    /// malformed one): the whole file, as RFC 9110 §14.2 allows.
    Ignored,
}

/// Reads `bytes=a-b`, `bytes=a-` or `bytes=-n` (RFC 9110 §14.1.2).
fn byte_range(header: &str, len: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Range::Ignored;
    };
    if spec.contains(',') {
        return Range::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Ignored;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (number(first), number(last), last.trim().is_empty()) {
        // The last n bytes.
        (None, Some(n), _) if first.trim().is_empty() => {
            if n == 0 || len == 0 {
                Range::Unsatisfiable
            } else {
                Range::Within(len.saturating_sub(n), len - 1)
            }
        }
        (Some(start), None, true) if start < len => Range::Within(start, len - 1),
        (Some(start), Some(end), _) if start <= end && start < len => {
            Range::Within(start, end.min(len - 1))
        }
        (Some(start), Some(end), _) if start <= end => Range::Unsatisfiable,
        (Some(_), None, true) => Range::Unsatisfiable,
        _ => Range::Ignored,
    }
}

/// `Content-Disposition`: inline for a picture, else an attachment, with the name
/// the sender gave as a plain fallback and exactly (RFC 6266, RFC 8187).
fn disposition(inline: bool, url_name: &str) -> String {
    let name = percent_decode(url_name)
        .filter(|n| !n.is_empty() && !n.chars().any(|c| c.is_control() || c == '/'))
        .unwrap_or_else(|| "file".to_owned());
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut exact = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            exact.push(char::from(b));
        } else {
            exact.push_str(&format!("%{b:02X}"));
        }
    }
    let kind = if inline { "inline" } else { "attachment" };
    format!("{kind}; filename=\"{plain}\"; filename*=UTF-8''{exact}")
}

/// A percent-encoded path segment as text; `None` when it is not UTF-8 once decoded
/// or a `%` is not followed by two hex digits.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(byte_range("bytes=0-9", 100), Range::Within(0, 9));
        assert_eq!(byte_range("bytes=90-", 100), Range::Within(90, 99));
        assert_eq!(byte_range("bytes=-10", 100), Range::Within(90, 99));
        assert_eq!(byte_range("bytes=-1000", 100), Range::Within(0, 99));
        assert_eq!(byte_range("bytes=50-1000", 100), Range::Within(50, 99));
        assert_eq!(byte_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(byte_range("bytes=100-200", 100), Range::Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 100), Range::Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
        ] {
            assert_eq!(byte_range(ignored, 100), Range::Ignored, "{ignored}");
        }
    }

    #[test]
    fn a_download_keeps_its_name_and_cannot_break_the_header() {
        assert_eq!(
            disposition(false, "report%20v2.pdf"),
            "attachment; filename=\"report v2.pdf\"; filename*=UTF-8''report%20v2.pdf"
        );
        assert_eq!(
            disposition(true, "%22%0D%0Ax.png"),
            "inline; filename=\"file\"; filename*=UTF-8''file"
        );
        assert!(disposition(false, "caf%C3%A9.txt").contains("filename=\"caf_.txt\""));
        assert!(disposition(false, "%ZZ").contains("\"file\""));
    }
}
