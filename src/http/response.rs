//! HTTP/1.1 responses, written in one piece.

use std::borrow::Cow;

/// A complete response: status, headers and body.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    headers: Vec<(&'static str, String)>,
    body: Cow<'static, [u8]>,
    /// Only the head goes out (an answer to `HEAD`), with the body's length.
    head_only: bool,
    /// The body is not here: the caller writes these many bytes after the head (a
    /// shared file, streamed from disk).
    streamed: Option<u64>,
}

impl Response {
    pub(crate) fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Cow::Borrowed(b""),
            head_only: false,
            streamed: None,
        }
    }

    /// A response whose body of `len` bytes the caller writes after the head.
    pub(crate) fn streamed(status: u16, len: u64) -> Self {
        Self {
            streamed: Some(len),
            ..Self::new(status)
        }
    }

    /// A response whose body is one line of plain text: the reason, for a human.
    pub(crate) fn text(status: u16, line: &str) -> Self {
        Self::new(status).body(
            "text/plain; charset=utf-8",
            format!("{line}\n").into_bytes(),
        )
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn body(mut self, content_type: &str, body: impl Into<Cow<'static, [u8]>>) -> Self {
        self.headers.push(("Content-Type", content_type.to_owned()));
        self.body = body.into();
        self
    }

    /// The same answer without its body, as `HEAD` wants it (RFC 9110 §9.3.2): the
    /// headers, `Content-Length` included, stay those of the `GET`.
    pub(crate) fn head_only(mut self) -> Self {
        self.head_only = true;
        self
    }

    /// The bytes on the wire. Every response but `101` closes the connection: this
    /// server answers one plain request per connection, which keeps the thread's job
    /// simple and is all a browser needs for one page.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(
            format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).as_bytes(),
        );
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        // No answer is ever sniffed into something else (a text reason
        // into HTML, say).
        if self.status != 101 {
            out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
        }
        // RFC 9110 §8.6: no Content-Length on a 101 or a 204.
        if self.status != 101 && self.status != 204 && self.status != 304 {
            let len = self.streamed.unwrap_or(self.body.len() as u64);
            out.extend_from_slice(format!("Content-Length: {len}\r\n").as_bytes());
        }
        if self.status != 101 {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// Every status this server answers with, and its reason phrase (RFC 9110 §15). A
/// status missing here would go out as `Unknown`; `src/doc_tables.rs` checks every
/// status the code builds a response with against this list, and the README's
/// refusal table and the API's status table against those statuses.
pub(crate) const STATUSES: [(u16, &str); 26] = [
    (100, "Continue"),
    (101, "Switching Protocols"),
    (200, "OK"),
    (201, "Created"),
    (202, "Accepted"),
    (204, "No Content"),
    (206, "Partial Content"),
    (303, "See Other"),
    (304, "Not Modified"),
    (400, "Bad Request"),
    (401, "Unauthorized"),
    (403, "Forbidden"),
    (404, "Not Found"),
    (405, "Method Not Allowed"),
    (408, "Request Timeout"),
    (409, "Conflict"),
    (411, "Length Required"),
    (413, "Content Too Large"),
    (415, "Unsupported Media Type"),
    (416, "Range Not Satisfiable"),
    (421, "Misdirected Request"),
    (426, "Upgrade Required"),
    (429, "Too Many Requests"),
    (431, "Request Header Fields Too Large"),
    (503, "Service Unavailable"),
    (507, "Insufficient Storage"),
];

fn reason(status: u16) -> &'static str {
    STATUSES
        .iter()
        .find(|(code, _)| *code == status)
        .map_or("Unknown", |(_, phrase)| phrase)
}

/// A JSON error, as the API and the sign-in answer: `{"error":code,"message":…}`
/// with its status.
pub(crate) fn error(status: u16, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": code, "message": message.into()}).to_string();
    Response::new(status).body("application/json", body.into_bytes())
}
