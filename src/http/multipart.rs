//! A file posted as `multipart/form-data` (RFC 7578), what `curl -F file=@cat.jpg`
//! sends: the part named `file` streamed into an [`Upload`] as it arrives, an optional
//! caption in a part named `text`, and nothing else.
//!
//! The parser is `multer`, which is async over a stream of byte chunks; the server is
//! blocking. So the stream it pulls from ([`Feed`]) blocks on the socket itself (the
//! body's [`Pieces`], each within a timeout, like a raw body), and [`drive`] polls the
//! parser on the connection thread until it is done: no runtime, no other thread.
//!
//! multer buffers until it finds what it looks for, and bounds neither a part's header
//! nor what comes before the first part. The feed does: it hands over one piece at a
//! time, and refuses the body once the parser holds more than [`MAX_HELD`] bytes
//! beyond that piece without handing them back as a part's data.

use super::body::{BodyError, PIECE, Pieces};
use super::request::HeadError;
use crate::chat;
use crate::files::{FileError, Upload};
use futures_core::Stream;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Instant;

/// Longest header of one part: its `Content-Disposition` and `Content-Type` need a
/// few hundred bytes, a long file name included.
pub(super) const MAX_PART_HEAD: usize = 4096;

/// Most bytes the parser may hold beyond the piece it is given, that are not a part's
/// data: the boundaries and part headers of a whole form fit several times over.
const MAX_HELD: usize = 16 * 1024;

/// Longest boundary (RFC 2046 §5.1.1).
const MAX_BOUNDARY: usize = 70;

/// How much longer than its file a form may be: its caption and its framing. A
/// `Content-Length` past the largest file by more is refused before any byte is read.
pub(super) fn overhead(max_text_len: usize) -> u64 {
    (MAX_HELD + max_text_len) as u64
}

/// The boundary of a `multipart/form-data` body, or why it has none that works.
pub(super) fn boundary(content_type: &str) -> Result<String, &'static str> {
    match multer::parse_boundary(content_type) {
        Ok(boundary) if (1..=MAX_BOUNDARY).contains(&boundary.len()) => Ok(boundary),
        Ok(_) => Err("a multipart boundary is 1 to 70 characters"),
        Err(_) => Err("send Content-Type: multipart/form-data; boundary=…"),
    }
}

/// What the request's query already says; it wins over the parts.
pub(super) struct Given {
    pub name: Option<String>,
    pub text: Option<String>,
    pub max_text_len: usize,
}

/// What a form brought besides the file's bytes (those are in the upload).
#[derive(Debug)]
pub(super) struct Form {
    pub name: String,
    pub mime: String,
    pub text: String,
}

/// Why a form was not taken.
#[derive(Debug)]
pub(super) enum FormError {
    /// The file could not be written, or is too large.
    File(FileError),
    /// The body did not come: it stalled, or ended early.
    Body(BodyError),
    /// The form is not one this takes (`400`): the error code, and one line on why.
    Bad(&'static str, String),
    /// The caption is longer than a chat message's text may be.
    TextTooLong,
}

fn bad(why: impl Into<String>) -> FormError {
    FormError::Bad("bad_request", why.into())
}

/// Reads a form from `pieces`, its file part into `upload`.
pub(super) fn read<S: Read + Send, W>(
    mut pieces: Pieces<'_, S, W>,
    boundary: &str,
    upload: &mut Upload,
    given: &Given,
) -> Result<Form, FormError>
where
    W: FnMut(&mut S, Instant) -> Result<(), HeadError> + Send,
{
    let meter = Arc::new(Meter::default());
    let feed = Feed {
        pieces: &mut pieces,
        meter: Arc::clone(&meter),
        fed: 0,
        resting: false,
    };
    let limits = multer::SizeLimit::new().for_field("text", given.max_text_len as u64);
    let constraints = multer::Constraints::new().size_limit(limits);
    let mut parts = multer::Multipart::with_constraints(feed, boundary, constraints);
    drive(read_parts(&mut parts, upload, given, &meter), &meter)
        .unwrap_or_else(|| Err(bad("the form ends before its closing boundary")))
}

/// The parts in order, each judged by its header before its data is read: the file's
/// bytes go to `upload` as they come, the caption is kept.
async fn read_parts(
    parts: &mut multer::Multipart<'_>,
    upload: &mut Upload,
    given: &Given,
    meter: &Meter,
) -> Result<Form, FormError> {
    let mut file = None;
    let mut caption = None;
    while let Some(mut part) = parts.next_field().await.map_err(parse_error)? {
        let head: usize = part
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if head > MAX_PART_HEAD {
            return Err(bad(format!(
                "a part's header is longer than {MAX_PART_HEAD} bytes"
            )));
        }
        match part.name() {
            Some("file") if file.is_some() => return Err(bad("two file parts: one file a post")),
            Some("file") => {
                let name = match (&given.name, part.file_name()) {
                    (Some(name), _) => name.clone(),
                    (None, Some(name)) => chat::valid_file_name(name)
                        .map_err(|e| FormError::Bad("bad_file", e.message))?,
                    (None, None) => {
                        return Err(FormError::Bad(
                            "bad_file",
                            "name the file: filename= in its part, or ?name=cat.jpg".into(),
                        ));
                    }
                };
                let mime = part
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap_or("\0"))
                    .unwrap_or("");
                let mime =
                    chat::valid_mime(mime).map_err(|e| FormError::Bad("bad_file", e.message))?;
                while let Some(bytes) = part.chunk().await.map_err(parse_error)? {
                    meter.hand(bytes.len());
                    upload.write(&bytes).map_err(FormError::File)?;
                }
                file = Some((name, mime));
            }
            Some("text") if caption.is_some() => return Err(bad("two text parts")),
            Some("text") => {
                // Bounded by the parser's limit for this part: a chat text's.
                let mut bytes = Vec::new();
                while let Some(chunk) = part.chunk().await.map_err(parse_error)? {
                    meter.hand(chunk.len());
                    bytes.extend_from_slice(&chunk);
                }
                let text = String::from_utf8(bytes)
                    .map_err(|_| FormError::Bad("bad_body", "the text is not UTF-8".into()))?;
                caption = Some(text);
            }
            _ => {
                return Err(bad(
                    "a form takes a part named file and one named text, no other",
                ));
            }
        }
    }
    let Some((name, mime)) = file else {
        return Err(bad("no file part: send it as file, curl -F file=@cat.jpg"));
    };
    let text = given.text.clone().or(caption).unwrap_or_default();
    Ok(Form { name, mime, text })
}

/// The parser's error as the post's: fixed lines, nothing of the peer's bytes.
fn parse_error(e: multer::Error) -> FormError {
    match e {
        multer::Error::StreamReadFailed(cause) => match cause.downcast::<Stop>().map(|s| *s) {
            Ok(Stop::Body(e)) => FormError::Body(e),
            Ok(Stop::Held) => bad(format!(
                "a part's header, or what comes before the first part, is longer than \
                 {MAX_PART_HEAD} bytes"
            )),
            Err(_) => bad("the form could not be read"),
        },
        multer::Error::FieldSizeExceeded { .. } => FormError::TextTooLong,
        multer::Error::IncompleteHeaders
        | multer::Error::ReadHeaderFailed(_)
        | multer::Error::DecodeHeaderName { .. }
        | multer::Error::DecodeHeaderValue { .. } => bad("a part's header is not valid"),
        _ => bad("the form does not follow its boundary"),
    }
}

/// What the feed and the form reader tell each other, and [`drive`].
#[derive(Debug, Default)]
struct Meter {
    /// Times the parser asked the feed for bytes.
    polls: AtomicU64,
    /// Bytes the parser handed back as parts' data.
    handed: AtomicU64,
}

impl Meter {
    fn hand(&self, n: usize) {
        self.handed.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Why the feed stopped the parser; it comes back out of the parser's error.
#[derive(Debug)]
enum Stop {
    Body(BodyError),
    /// The parser holds too much that is not a part's data: a header without end, or
    /// a preamble.
    Held,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Body(e) => write!(f, "the body did not come: {e:?}"),
            Stop::Held => f.write_str("too much before a part's data"),
        }
    }
}

impl std::error::Error for Stop {}

/// The parser's stream: the body's pieces, one per poll.
struct Feed<'p, 'a, S, W> {
    pieces: &'p mut Pieces<'a, S, W>,
    meter: Arc<Meter>,
    /// Bytes handed to the parser.
    fed: u64,
    /// A piece went out on this poll: the next answer is `Pending`, so the parser
    /// deals with it before it gets another (it would otherwise pull until the stream
    /// pends, and with a blocking socket that is the whole body).
    resting: bool,
}

impl<S: Read, W> Stream for Feed<'_, '_, S, W>
where
    W: FnMut(&mut S, Instant) -> Result<(), HeadError>,
{
    type Item = Result<Vec<u8>, Stop>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        let feed = self.get_mut();
        feed.meter.polls.fetch_add(1, Ordering::Relaxed);
        if std::mem::take(&mut feed.resting) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let held = feed
            .fed
            .saturating_sub(feed.meter.handed.load(Ordering::Relaxed));
        if held > (PIECE + MAX_HELD) as u64 {
            return Poll::Ready(Some(Err(Stop::Held)));
        }
        match feed.pieces.next() {
            Ok(None) => Poll::Ready(None),
            Ok(Some(piece)) => {
                feed.fed += piece.len() as u64;
                feed.resting = true;
                Poll::Ready(Some(Ok(piece.to_vec())))
            }
            Err(e) => Poll::Ready(Some(Err(Stop::Body(e)))),
        }
    }
}

/// Runs `future` to its end on this thread. Its only source of `Pending` is the
/// feed, which is ready again at once (its bytes come from a blocking read), so this
/// polls again straight away. A `Pending` that did not come from the feed would wait
/// for nothing this thread can give: `None`.
fn drive<T>(future: impl Future<Output = T>, meter: &Meter) -> Option<T> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        let polls = meter.polls.load(Ordering::Relaxed);
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(value) => return Some(value),
            Poll::Pending if meter.polls.load(Ordering::Relaxed) == polls => return None,
            Poll::Pending => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Files;
    use std::time::Duration;

    const B: &str = "XyZ";

    /// Reads `body` as a form, `chunk` bytes a read; the file's bytes as stored.
    fn form(body: &[u8], chunk: usize, given: &Given) -> Result<(Form, Vec<u8>), FormError> {
        struct Trickle<'b>(&'b [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let files = Files::open(None, 1 << 20, 1 << 30).unwrap();
        let mut upload = files.begin_at_most(body.len() as u64).unwrap();
        let mut stream = Trickle(body, chunk);
        let pieces = Pieces::new(
            &mut stream,
            Vec::new(),
            body.len() as u64,
            Duration::from_secs(1),
            |_: &mut Trickle, _| Ok(()),
        );
        let form = read(pieces, B, &mut upload, given)?;
        let id = upload.finish().unwrap();
        let mut bytes = Vec::new();
        files.open_id(&id).unwrap().read_to_end(&mut bytes).unwrap();
        Ok((form, bytes))
    }

    fn given() -> Given {
        Given {
            name: None,
            text: None,
            max_text_len: 100,
        }
    }

    fn part(name: &str, extra: &str, data: &[u8]) -> Vec<u8> {
        let mut p =
            format!("--{B}\r\nContent-Disposition: form-data; name=\"{name}\"{extra}\r\n\r\n")
                .into_bytes();
        p.extend_from_slice(data);
        p.extend_from_slice(b"\r\n");
        p
    }

    fn end(mut parts: Vec<u8>) -> Vec<u8> {
        parts.extend_from_slice(format!("--{B}--\r\n").as_bytes());
        parts
    }

    #[test]
    fn a_file_and_its_caption_come_through_however_the_bytes_are_cut() {
        // Data that looks like a boundary, but is not one.
        let data: Vec<u8> = b"\r\n--XyY\r--Xy\r\n-"
            .iter()
            .copied()
            .cycle()
            .take(200_000)
            .collect();
        let mut body = part(
            "file",
            "; filename=\"cat.jpg\"\r\nContent-Type: image/jpeg",
            &data,
        );
        body.extend(part("text", "", "caption é".as_bytes()));
        let body = end(body);
        for chunk in [1, 7, 4096, 1 << 20] {
            let (form, bytes) = form(&body, chunk, &given()).unwrap();
            assert_eq!(
                (form.name.as_str(), form.mime.as_str(), form.text.as_str()),
                ("cat.jpg", "image/jpeg", "caption é")
            );
            assert!(bytes == data, "chunk {chunk}");
        }
        // The query wins.
        let query = Given {
            name: Some("q.bin".into()),
            text: Some("q".into()),
            max_text_len: 100,
        };
        let (form, _) = form(&body, 4096, &query).unwrap();
        assert_eq!((form.name.as_str(), form.text.as_str()), ("q.bin", "q"));
    }

    #[test]
    fn forms_that_are_not_one_file_are_refused() {
        let file = || part("file", "; filename=\"a\"", b"abc");
        let refused = |body: Vec<u8>| match form(&body, 4096, &given()) {
            Err(FormError::Bad(_, why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(refused(end(part("text", "", b"hi"))).contains("no file part"));
        assert!(refused(end([file(), file()].concat())).contains("two file"));
        assert!(refused(end([file(), part("other", "", b"x")].concat())).contains("no other"));
        // No closing boundary; the wrong boundary.
        assert!(refused(file()).contains("boundary"));
        assert!(refused(end(file()).replace_all(b"XyZ", b"Abc")).contains("boundary"));
        let long_head = part(
            "file",
            &format!("; filename=\"{}\"", "a".repeat(5000)),
            b"x",
        );
        assert!(refused(end(long_head)).contains("longer than"));
        // A header that never ends is refused once the parser holds too much of it.
        let mut endless =
            format!("--{B}\r\nContent-Disposition: form-data; name=\"file\"; x=\"").into_bytes();
        endless.extend(std::iter::repeat_n(b'a', 1 << 20));
        assert!(refused(endless).contains("longer than"));
        let mut preamble = vec![b'a'; 1 << 20];
        preamble.extend(end(file()));
        assert!(refused(preamble).contains("longer than"));
        assert!(matches!(
            form(
                &end([file(), part("text", "", &[b'a'; 101])].concat()),
                7,
                &given()
            ),
            Err(FormError::TextTooLong)
        ));
    }

    trait ReplaceAll {
        fn replace_all(self, from: &[u8], to: &[u8]) -> Vec<u8>;
    }

    impl ReplaceAll for Vec<u8> {
        fn replace_all(self, from: &[u8], to: &[u8]) -> Vec<u8> {
            let text = String::from_utf8(self).unwrap();
            let (from, to) = (
                std::str::from_utf8(from).unwrap(),
                std::str::from_utf8(to).unwrap(),
            );
            text.replace(from, to).into_bytes()
        }
    }
}
