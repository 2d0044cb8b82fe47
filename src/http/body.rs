//! Reading a request body: `Content-Length` or `Transfer-Encoding: chunked` (RFC 9112
//! §6), bounded in size and read under the same deadline as the head, so a client
//! that lies about its length cannot hold the thread. Chunk sizes are parsed by
//! `httparse`.
//!
//! A posted file is not read whole: [`Pieces`] hands its `Content-Length` bytes out
//! as they arrive, each piece within a timeout of its own, so a slow network is fine
//! and a stalled one is not.

use super::request::{HeadError, Request};
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Why no body could be had.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Longer than the limit (`413`).
    TooLarge,
    /// Framing that cannot be read: a bad `Content-Length`, both framings, bad chunks.
    Malformed(&'static str),
    /// The deadline passed, the peer closed, or the server is shutting down.
    Head(HeadError),
}

/// Reads the body of `req`, of which `rest` already arrived behind the head. `wait`
/// blocks until the stream may have bytes (or fails at the deadline or shutdown).
pub(crate) fn read<S: Read>(
    stream: &mut S,
    rest: Vec<u8>,
    req: &Request,
    max: usize,
    deadline: Instant,
    mut wait: impl FnMut(&mut S, Instant) -> Result<(), HeadError>,
) -> Result<Vec<u8>, BodyError> {
    let chunked = req.has_token("Transfer-Encoding", "chunked");
    let lengths: Vec<&[u8]> = req.header_values("Content-Length").collect();
    if chunked && !lengths.is_empty() {
        return Err(BodyError::Malformed(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    let mut input = Input {
        stream,
        buf: rest,
        deadline,
    };
    if chunked {
        return dechunk(&mut input, max, &mut wait);
    }
    let length = match lengths.as_slice() {
        [] => 0,
        [one] => std::str::from_utf8(one)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or(BodyError::Malformed("Content-Length is not a number"))?,
        _ => return Err(BodyError::Malformed("more than one Content-Length")),
    };
    if length > max {
        return Err(BodyError::TooLarge);
    }
    input.fill_to(length, &mut wait)?;
    input.buf.truncate(length);
    Ok(input.buf)
}

/// Most bytes one [`Pieces::next`] hands out: a few reads' worth, never the body.
pub(crate) const PIECE: usize = 64 * 1024;

/// A body of `Content-Length` bytes, handed out in pieces as they arrive: what
/// streams a file to disk, raw or in a form, never whole in memory.
pub(crate) struct Pieces<'a, S, W> {
    stream: &'a mut S,
    /// What arrived behind the head, handed out first.
    early: Vec<u8>,
    /// Bytes of the body not yet handed out.
    left: u64,
    buf: Vec<u8>,
    /// How long the next piece may take to start arriving.
    patience: Duration,
    wait: W,
}

impl<'a, S: Read, W: FnMut(&mut S, Instant) -> Result<(), HeadError>> Pieces<'a, S, W> {
    /// The body of `length` bytes, of which `early` arrived with the head (more than
    /// `length` of it is the next request's, and ignored). `wait` blocks until the
    /// stream may have bytes, or fails at the deadline or shutdown.
    pub(crate) fn new(
        stream: &'a mut S,
        mut early: Vec<u8>,
        length: u64,
        patience: Duration,
        wait: W,
    ) -> Self {
        early.truncate(usize::try_from(length).unwrap_or(usize::MAX));
        Pieces {
            stream,
            left: length,
            early,
            buf: Vec::new(),
            patience,
            wait,
        }
    }

    /// The next bytes of the body (at least one, at most [`PIECE`]); `None` once all
    /// `Content-Length` bytes are in.
    pub(crate) fn next(&mut self) -> Result<Option<&[u8]>, BodyError> {
        if self.left == 0 {
            return Ok(None);
        }
        if !self.early.is_empty() {
            self.buf = std::mem::take(&mut self.early);
            self.left -= self.buf.len() as u64;
            return Ok(Some(&self.buf));
        }
        let want = usize::try_from(self.left).map_or(PIECE, |left| left.min(PIECE));
        self.buf.resize(want, 0);
        loop {
            let deadline = Instant::now() + self.patience;
            (self.wait)(self.stream, deadline).map_err(|e| match e {
                HeadError::Timeout { .. } => BodyError::Head(HeadError::Timeout { partial: true }),
                other => BodyError::Head(other),
            })?;
            if let Some(n) = read_some(self.stream, &mut self.buf[..want])? {
                self.left -= n as u64;
                return Ok(self.buf.get(..n));
            }
        }
    }
}

/// One read of a body: `Some` of the bytes read (at least one), `None` when there
/// was nothing after all (a read that would block, timed out or was interrupted: the
/// caller waits again); the end of the stream before the body's end is an error.
fn read_some<S: Read>(stream: &mut S, buf: &mut [u8]) -> Result<Option<usize>, BodyError> {
    match stream.read(buf) {
        Ok(0) => Err(BodyError::Head(HeadError::Closed { partial: true })),
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(BodyError::Head(HeadError::Io(e))),
    }
}

/// Bytes of the body that have arrived, and where more come from.
struct Input<'a, S> {
    stream: &'a mut S,
    buf: Vec<u8>,
    deadline: Instant,
}

impl<S: Read> Input<'_, S> {
    /// Reads whatever arrived next (at least one byte).
    fn fill_some(
        &mut self,
        wait: &mut impl FnMut(&mut S, Instant) -> Result<(), HeadError>,
    ) -> Result<(), BodyError> {
        let have = self.buf.len();
        self.fill(have + 1, 4096, wait)
    }

    /// Reads until at least `len` bytes are buffered.
    fn fill_to(
        &mut self,
        len: usize,
        wait: &mut impl FnMut(&mut S, Instant) -> Result<(), HeadError>,
    ) -> Result<(), BodyError> {
        self.fill(len, 0, wait)
    }
    /// Reads until at least `len` bytes are buffered, taking up to `extra` more if
    /// they are there already.
    fn fill(
        &mut self,
        len: usize,
        extra: usize,
        wait: &mut impl FnMut(&mut S, Instant) -> Result<(), HeadError>,
    ) -> Result<(), BodyError> {
        let mut scratch = [0u8; 4096];
        while self.buf.len() < len {
            if Instant::now() >= self.deadline {
                return Err(BodyError::Head(HeadError::Timeout { partial: true }));
            }
            wait(self.stream, self.deadline).map_err(|e| match e {
                HeadError::Timeout { .. } => BodyError::Head(HeadError::Timeout { partial: true }),
                other => BodyError::Head(other),
            })?;
            let want = (len + extra - self.buf.len()).min(scratch.len());
            if let Some(n) = read_some(self.stream, &mut scratch[..want])? {
                self.buf.extend_from_slice(&scratch[..n]);
            }
        }
        Ok(())
    }
}

/// Longest chunk-size line, extensions included: a size in hex needs 16 digits, and
/// nothing here uses an extension, so one of a few dozen bytes is generous.
const MAX_SIZE_LINE: usize = 128;

/// Decodes a chunked body (RFC 9112 §7.1), trailers ignored.
///
/// Linear in what arrives: bytes are read as they come (never one `read` per byte),
/// a size line is parsed again only when more of it arrived and never past
/// [`MAX_SIZE_LINE`], and the framing may add at most that much per chunk of at least
/// one byte, so a body of `max` bytes costs `O(max × MAX_SIZE_LINE)` at the very worst.
fn dechunk<S: Read>(
    input: &mut Input<'_, S>,
    max: usize,
    wait: &mut impl FnMut(&mut S, Instant) -> Result<(), HeadError>,
) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (header, size) = loop {
            match httparse::parse_chunk_size(&input.buf[at..]) {
                Ok(httparse::Status::Complete((header, size))) => break (header, size),
                Ok(httparse::Status::Partial) if input.buf.len() - at > MAX_SIZE_LINE => {
                    return Err(BodyError::Malformed("chunk size line too long"));
                }
                Ok(httparse::Status::Partial) => input.fill_some(wait)?,
                Err(_) => return Err(BodyError::Malformed("bad chunk size")),
            }
        };
        if header > MAX_SIZE_LINE {
            return Err(BodyError::Malformed("chunk size line too long"));
        }
        let size = usize::try_from(size).map_err(|_| BodyError::TooLarge)?;
        if body.len().saturating_add(size) > max {
            return Err(BodyError::TooLarge);
        }
        at += header;
        if size == 0 {
            // The last chunk, then trailers up to an empty line. Nothing of them is
            // used; reading them is not worth waiting for.
            return Ok(body);
        }
        input.fill_to(at + size + 2, wait)?;
        body.extend_from_slice(&input.buf[at..at + size]);
        if input.buf.get(at + size..at + size + 2) != Some(b"\r\n") {
            return Err(BodyError::Malformed("a chunk does not end with CRLF"));
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{Parsed, parse};

    fn body(raw: &[u8], max: usize) -> Result<Vec<u8>, BodyError> {
        let Ok(Parsed::Complete(req, len)) = parse(raw) else {
            panic!("no head");
        };
        let rest = raw[len..].to_vec();
        let mut empty: &[u8] = &[];
        let deadline = Instant::now() + Duration::from_millis(50);
        read(&mut empty, rest, &req, max, deadline, |_, _| {
            Err(HeadError::Timeout { partial: true })
        })
    }

    #[test]
    fn content_length_and_chunked_bodies_are_read_whole() {
        let plain = body(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 100);
        assert_eq!(plain.unwrap(), b"hello");
        let chunked = body(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
            100,
        );
        assert_eq!(chunked.unwrap(), b"hello world");
    }

    #[test]
    fn bad_framing_is_refused_and_a_short_body_times_out() {
        let refused = |raw: &[u8]| matches!(body(raw, 100), Err(BodyError::Malformed(_)));
        assert!(refused(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"));
        assert!(refused(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na"
        ));
        assert!(refused(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\na"
        ));
        assert!(refused(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        ));
        assert!(matches!(
            body(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 100),
            Err(BodyError::TooLarge)
        ));
        assert!(matches!(
            body(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n",
                100
            ),
            Err(BodyError::TooLarge)
        ));
        // Says 10, sends 3: the deadline ends it.
        assert!(matches!(
            body(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 100),
            Err(BodyError::Head(HeadError::Timeout { partial: true }))
        ));
    }

    #[test]
    fn pieces_hand_out_the_body_as_it_comes_and_no_more() {
        let mut rest: &[u8] = b"defgh-next request";
        let mut pieces = Pieces::new(
            &mut rest,
            b"abc-".to_vec(),
            3,
            Duration::from_millis(50),
            |_, _| Ok(()),
        );
        assert_eq!(pieces.next().unwrap(), Some(&b"abc"[..]));
        assert!(pieces.next().unwrap().is_none());

        let mut rest: &[u8] = b"defgh-next request";
        let mut pieces = Pieces::new(&mut rest, b"abc".to_vec(), 8, Duration::ZERO, |_, _| Ok(()));
        let mut got = Vec::new();
        while let Some(piece) = pieces.next().unwrap() {
            got.extend_from_slice(piece);
        }
        assert_eq!(got, b"abcdefgh");

        // Says 10, sends 3: the wait ends it.
        let mut rest: &[u8] = b"";
        let mut pieces = Pieces::new(&mut rest, b"abc".to_vec(), 10, Duration::ZERO, |_, _| {
            Err(HeadError::Timeout { partial: false })
        });
        assert!(pieces.next().is_ok());
        assert!(matches!(
            pieces.next(),
            Err(BodyError::Head(HeadError::Timeout { partial: true }))
        ));
    }
}
