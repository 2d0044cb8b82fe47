//! Reading and parsing an HTTP/1.x request head, with the limits a server on a LAN
//! needs against slow or hostile clients (8 KiB, within the handshake timeout).

use std::io::{self, Read};
use std::time::Instant;

use crate::base::READ_BUFFER;
use crate::head::{self, Refused};
pub(crate) use crate::head::{MAX_HEAD, Parsed, Request};

/// Why no request head could be had.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The head was longer than [`MAX_HEAD`] or had too many header lines.
    TooLarge,
    /// The bytes are not an HTTP request.
    Malformed(String),
    /// The deadline passed; `partial` tells whether anything at all had arrived.
    Timeout {
        partial: bool,
    },
    /// The peer closed the connection before finishing the head.
    Closed {
        partial: bool,
    },
    /// The server is shutting down.
    Shutdown,
    Io(io::Error),
}

impl From<Refused> for HeadError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::TooLarge => HeadError::TooLarge,
            Refused::Malformed(why) => HeadError::Malformed(why),
        }
    }
}

/// Parses the bytes received so far, with the one head parser of the crate.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, HeadError> {
    Ok(head::parse(buf)?)
}

/// Reads until a whole request head has arrived.
///
/// `wait` blocks until the stream may have bytes, or the deadline or a shutdown comes
/// (it returns `Err` then). Returns the request and whatever bytes followed the head
/// (pipelined WebSocket frames, which belong to the frame parser).
///
/// Those bytes come back in the very buffer the head was read into, with room for
/// [`READ_BUFFER`] bytes: a WebSocket session takes it as its read buffer instead of
/// allocating one, and the connection thread is not left holding a freed head
/// buffer in its allocator's per-thread cache for as long as the session lasts.
pub(crate) fn read_head<S: Read>(
    stream: &mut S,
    deadline: Instant,
    mut wait: impl FnMut(&mut S, Instant) -> Result<(), HeadError>,
) -> Result<(Request, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(READ_BUFFER);
    // Where the search for the head's end starts: the head is parsed again only once
    // a blank line may have arrived, so a client sending a byte at a time costs a
    // scan of each byte once, not a parse of the whole head per byte.
    let mut scanned: usize = 0;
    loop {
        let ended = buf
            .get(scanned.saturating_sub(3)..)
            .is_some_and(|new| new.windows(2).any(|w| w == b"\n\n" || w == b"\n\r"));
        if (ended || buf.len() > MAX_HEAD)
            && let Parsed::Complete(req, len) = parse(&buf)?
        {
            buf.drain(..len);
            // A head that grew the buffer past its usual size leaves no more than that
            // behind for the session.
            buf.shrink_to(READ_BUFFER);
            return Ok((req, buf));
        }
        scanned = buf.len();
        let partial = !buf.is_empty();
        if Instant::now() >= deadline {
            return Err(HeadError::Timeout { partial });
        }
        wait(stream, deadline).map_err(|e| match e {
            HeadError::Timeout { .. } => HeadError::Timeout { partial },
            other => other,
        })?;
        // Never read past the limit: one byte over is enough to know it is too long.
        // Read straight into the buffer's spare room, not a chunk on the stack.
        let filled = buf.len();
        let room = (MAX_HEAD + 1).saturating_sub(filled).min(1024);
        buf.resize(filled + room, 0);
        let read = stream.read(&mut buf[filled..]);
        buf.truncate(filled + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => return Err(HeadError::Closed { partial }),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte).
/// `None` when an escape is broken or the result is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

/// The value of `key` in a query string, decoded.
pub(crate) fn query_param(query: Option<&str>, key: &str) -> Option<Option<String>> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(head: &str) -> Request {
        match parse(head.as_bytes()) {
            Ok(Parsed::Complete(r, _)) => r,
            _ => panic!("no complete head in {head:?}"),
        }
    }

    #[test]
    fn tokens_span_lists_and_repeats() {
        let r = req("GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nconnection: x\r\n\r\n");
        assert!(r.has_token("connection", "upgrade"));
        assert!(r.has_token("Connection", "x"));
        assert!(!r.has_token("Connection", "close"));
    }

    #[test]
    fn absolute_form_target_has_a_path() {
        assert_eq!(
            req("GET ws://h:1/ws/chat?name=a HTTP/1.1\r\n\r\n").path_and_query(),
            ("/ws/chat", Some("name=a"))
        );
        assert_eq!(
            req("GET http://h HTTP/1.1\r\n\r\n").path_and_query(),
            ("/", None)
        );
    }

    #[test]
    fn partial_and_oversized_heads() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Ok(Parsed::Partial)
        ));
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(long.as_bytes()), Err(HeadError::TooLarge)));
        assert!(matches!(
            parse(b"\x00\x01garbage\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            query_param(Some("a=1&name=J%C3%BCrgen+K"), "name"),
            Some(Some("Jürgen K".into()))
        );
        assert_eq!(query_param(Some("name=%ZZ"), "name"), Some(None));
        assert_eq!(query_param(Some("name=%FF"), "name"), Some(None));
        assert_eq!(query_param(None, "name"), None);
        assert_eq!(query_param(Some("other=1"), "name"), None);
    }
}
