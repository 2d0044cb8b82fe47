//! RFC 6455 frames, bit by bit: one [`Header`] type, an encoder that writes any
//! header — a wrong one too, on purpose — and an incremental [`Decoder`] that never
//! panics on what a peer sent.
//!
//! The server itself reads and writes frames through tungstenite. This module is for
//! the code that must see or make the wire exactly as it is, whatever a library would
//! make of it: the [`trace`](crate::trace) decoder, `switchboard check` (which sends
//! frames no library would send, such as a 64-bit length for five bytes, and grades
//! what comes back), and the project's own conformance tests. It lives in the library,
//! public, rather than in the binary's `check/` folder, because the integration tests
//! under `tests/` can import the library but not the binary: written here, the frame
//! code exists once for all three. It depends on nothing, not even the rest of the
//! crate, so it builds with `--no-default-features` and sits at the bottom layer.
//!
//! ```
//! use switchboard::frame::{self, Decoder, Header, Length};
//!
//! // A masked text frame, as a client sends it, and a deliberately odd one: the
//! // 64-bit length form for a 2-byte payload (RFC 6455 §5.2 says "minimal").
//! let mut wire = frame::encode(&Header::new(frame::TEXT, 5).masked([1, 2, 3, 4]), b"hello");
//! let odd = Header::new(frame::BINARY, 2).length(Length::Bits64);
//! wire.extend(frame::encode(&odd, b"hi"));
//!
//! let mut decoder = Decoder::new(1 << 20);
//! decoder.feed(&wire[..3]); // bytes arrive in any pieces
//! assert!(decoder.next_frame()?.is_none());
//! decoder.feed(&wire[3..]);
//! let first = decoder.next_frame()?.expect("a whole frame");
//! assert_eq!((first.header.opcode, first.payload.as_slice()), (frame::TEXT, &b"hello"[..]));
//! let second = decoder.next_frame()?.expect("a whole frame");
//! assert_eq!(second.header.length, Length::Bits64);
//! # Ok::<(), switchboard::frame::FrameError>(())
//! ```

use std::fmt;
use std::io::{self, Read};

/// Opcode of a continuation frame (RFC 6455 §5.4).
pub const CONTINUATION: u8 = 0x0;
/// Opcode of a text frame (§5.6).
pub const TEXT: u8 = 0x1;
/// Opcode of a binary frame (§5.6).
pub const BINARY: u8 = 0x2;
/// Opcode of a Close frame (§5.5.1).
pub const CLOSE: u8 = 0x8;
/// Opcode of a Ping frame (§5.5.2).
pub const PING: u8 = 0x9;
/// Opcode of a Pong frame (§5.5.3).
pub const PONG: u8 = 0xA;

/// RSV1, as [`Header::rsv`] holds it (§5.2).
pub const RSV1: u8 = 0b100;
/// RSV2, as [`Header::rsv`] holds it.
pub const RSV2: u8 = 0b010;
/// RSV3, as [`Header::rsv`] holds it.
pub const RSV3: u8 = 0b001;

/// The most a control frame may carry (§5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Which of the three length encodings a header uses (§5.2, Payload length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// In the second byte itself: 0 to 125.
    Bits7,
    /// 126, then a 16-bit length: 126 to 65,535.
    Bits16,
    /// 127, then a 64-bit length (most significant bit 0): anything larger.
    Bits64,
}

impl Length {
    /// The shortest form that holds `len`: the one RFC 6455 §5.2 requires a sender
    /// to use.
    pub fn minimal(len: u64) -> Length {
        match len {
            0..=125 => Length::Bits7,
            126..=0xffff => Length::Bits16,
            _ => Length::Bits64,
        }
    }

    /// 7, 16 or 64.
    pub fn bits(self) -> u8 {
        match self {
            Length::Bits7 => 7,
            Length::Bits16 => 16,
            Length::Bits64 => 64,
        }
    }

    /// Bytes of extended length after the second byte: 0, 2 or 8.
    fn extra(self) -> usize {
        match self {
            Length::Bits7 => 0,
            Length::Bits16 => 2,
            Length::Bits64 => 8,
        }
    }
}

/// A frame header (RFC 6455 §5.2), as it is on the wire: nothing is checked against
/// the protocol's rules here ([`Header::violation`] does that), so any header can be
/// written and every header can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN: the last frame of its message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as three low bits ([`RSV1`] is `0b100`).
    pub rsv: u8,
    /// The opcode, 0x0 to 0xF.
    pub opcode: u8,
    /// The masking key, when MASK is set (every client frame, §5.3).
    pub mask: Option<[u8; 4]>,
    /// The payload length the header announces.
    pub len: u64,
    /// How that length is written.
    pub length: Length,
}

impl Header {
    /// A final, unmasked frame of `opcode` announcing `len` bytes in the minimal form.
    pub fn new(opcode: u8, len: u64) -> Header {
        Header {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            len,
            length: Length::minimal(len),
        }
    }

    /// With FIN set or clear.
    pub fn fin(self, fin: bool) -> Header {
        Header { fin, ..self }
    }

    /// With these RSV bits (the three low bits of `rsv`).
    pub fn rsv(self, rsv: u8) -> Header {
        Header {
            rsv: rsv & 0b111,
            ..self
        }
    }

    /// Masked with `key`.
    pub fn masked(self, key: [u8; 4]) -> Header {
        Header {
            mask: Some(key),
            ..self
        }
    }

    /// Announcing `len` bytes, in whatever form the header had.
    pub fn announcing(self, len: u64) -> Header {
        Header { len, ..self }
    }

    /// With the length in this form, minimal or not. A length the form cannot hold
    /// is written cut to the form's width: a broken frame, on purpose.
    pub fn length(self, length: Length) -> Header {
        Header { length, ..self }
    }

    /// Whether the opcode is a control opcode (0x8 and up, §5.5).
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }

    /// How many bytes the header takes on the wire: 2 to 14.
    pub fn size(&self) -> usize {
        2 + self.length.extra() + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends the header's bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.fin) << 7 | (self.rsv & 0b111) << 4 | (self.opcode & 0x0f));
        let mask_bit = u8::from(self.mask.is_some()) << 7;
        match self.length {
            // Cut to 7 bits: 126 and 127 then read as the markers of the longer forms.
            Length::Bits7 => out.push(mask_bit | (self.len & 0x7f) as u8),
            Length::Bits16 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&((self.len & 0xffff) as u16).to_be_bytes());
            }
            Length::Bits64 => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&self.len.to_be_bytes());
            }
        }
        if let Some(key) = self.mask {
            out.extend_from_slice(&key);
        }
    }

    /// Reads a header from the start of `bytes`: the header and its size, or `None`
    /// when more bytes are needed. Any 2 to 14 bytes are some header, so this never
    /// fails; see [`Header::violation`] for what the protocol allows.
    pub fn parse(bytes: &[u8]) -> Option<(Header, usize)> {
        let (&b0, &b1) = (bytes.first()?, bytes.get(1)?);
        let (length, len) = match b1 & 0x7f {
            126 => (
                Length::Bits16,
                u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
            ),
            127 => (
                Length::Bits64,
                u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?),
            ),
            n => (Length::Bits7, u64::from(n)),
        };
        let at = 2 + length.extra();
        let mask = if b1 & 0x80 != 0 {
            Some(bytes.get(at..at + 4)?.try_into().ok()?)
        } else {
            None
        };
        let header = Header {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0b111,
            opcode: b0 & 0x0f,
            mask,
            len,
            length,
        };
        Some((header, header.size()))
    }

    /// The first rule of RFC 6455 this header breaks when `from` sent it, with no
    /// extension negotiated; `None` if it keeps them all. (Whether a continuation
    /// continues anything depends on the frames before it: [`Violation::Orphan`]
    /// and [`Violation::Interleaved`] are for the caller that knows.)
    pub fn violation(&self, from: Role) -> Option<Violation> {
        match (from, self.mask) {
            (Role::Client, None) => return Some(Violation::Unmasked),
            (Role::Server, Some(_)) => return Some(Violation::Masked),
            _ => {}
        }
        if self.rsv != 0 {
            return Some(Violation::Rsv(self.rsv));
        }
        if matches!(self.opcode, 0x3..=0x7 | 0xB..=0xF) {
            return Some(Violation::ReservedOpcode(self.opcode));
        }
        if self.length == Length::Bits64 && self.len >> 63 != 0 {
            return Some(Violation::LengthTopBit);
        }
        if self.is_control() && self.len > MAX_CONTROL_PAYLOAD {
            return Some(Violation::ControlTooLong(self.len));
        }
        if self.is_control() && !self.fin {
            return Some(Violation::ControlFragmented);
        }
        if self.length != Length::minimal(self.len) {
            return Some(Violation::NotMinimal(self.length, self.len));
        }
        None
    }
}

/// Which end of a connection sent a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that opened the connection: its frames are masked (§5.3).
    Client,
    /// The end that accepted it: its frames are not (§5.1).
    Server,
}

/// A rule of RFC 6455 a frame breaks; its `Display` names the rule and the section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// A client frame without a mask.
    Unmasked,
    /// A server frame with a mask.
    Masked,
    /// RSV bits set with no extension negotiated.
    Rsv(u8),
    /// An opcode RFC 6455 reserves.
    ReservedOpcode(u8),
    /// A 64-bit length with its most significant bit set.
    LengthTopBit,
    /// A control frame over 125 bytes.
    ControlTooLong(u64),
    /// A control frame without FIN.
    ControlFragmented,
    /// A length in a longer form than it needs.
    NotMinimal(Length, u64),
    /// A continuation frame with no message to continue.
    Orphan,
    /// A new text or binary frame while a fragmented message is unfinished.
    Interleaved,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Unmasked => {
                f.write_str("a client frame without a mask (RFC 6455 §5.1, §5.3)")
            }
            Violation::Masked => f.write_str("a server frame with a mask (RFC 6455 §5.1)"),
            Violation::Rsv(rsv) => write!(
                f,
                "RSV bits {rsv:03b} set with no extension negotiated (RFC 6455 §5.2)"
            ),
            Violation::ReservedOpcode(op) => {
                write!(f, "reserved opcode 0x{op:X} (RFC 6455 §5.2)")
            }
            Violation::LengthTopBit => {
                f.write_str("a 64-bit length with its most significant bit set (RFC 6455 §5.2)")
            }
            Violation::ControlTooLong(len) => write!(
                f,
                "a control frame of {len} bytes, over 125 (RFC 6455 §5.5)"
            ),
            Violation::ControlFragmented => {
                f.write_str("a fragmented control frame (RFC 6455 §5.5)")
            }
            Violation::NotMinimal(length, len) => write!(
                f,
                "length {len} written in the {}-bit form, not the minimal one (RFC 6455 §5.2)",
                length.bits()
            ),
            Violation::Orphan => {
                f.write_str("a continuation frame with nothing to continue (RFC 6455 §5.4)")
            }
            Violation::Interleaved => f.write_str(
                "a new data frame inside an unfinished fragmented message (RFC 6455 §5.4)",
            ),
        }
    }
}

/// How many bytes a header takes, from its second byte alone (MASK and the length
/// marker): 2, then 2 or 8 of extended length, then 4 of masking key (§5.2).
pub fn header_size(second_byte: u8) -> usize {
    let length = match second_byte & 0x7f {
        126 => Length::Bits16,
        127 => Length::Bits64,
        _ => Length::Bits7,
    };
    2 + length.extra() + if second_byte & 0x80 != 0 { 4 } else { 0 }
}

/// `payload` masked (or unmasked: the same operation) with `key`, as if it started
/// `offset` bytes into a frame's payload (§5.3).
pub fn apply_mask(key: [u8; 4], offset: u64, payload: &mut [u8]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[((offset + i as u64) % 4) as usize];
    }
}

/// One frame's bytes: `header`, then `payload`, masked with the header's key if it
/// has one. The header's length is written as it is, even when it is not
/// `payload.len()`: that is how a case sends a frame that lies about its length.
pub fn encode(header: &Header, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.size() + payload.len());
    header.write(&mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = header.mask {
        apply_mask(key, 0, &mut out[start..]);
    }
    out
}

/// A whole frame: its header and its payload, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header as it was on the wire.
    pub header: Header,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A Close frame's status code and reason bytes (§5.5.1): `None` for an empty
    /// payload, `Err` for a one-byte one.
    pub fn close(&self) -> Option<Result<(u16, &[u8]), FrameError>> {
        match self.payload.as_slice() {
            [] => None,
            [a, b, reason @ ..] => Some(Ok((u16::from_be_bytes([*a, *b]), reason))),
            [_] => Some(Err(FrameError::OneByteClose)),
        }
    }
}

/// Bytes that are not a frame the decoder can deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A 64-bit length with its most significant bit set: not a length (§5.2).
    LengthTopBit,
    /// A payload longer than the decoder takes.
    TooLong {
        /// What the header announced.
        len: u64,
        /// What the decoder takes.
        max: u64,
    },
    /// A Close payload of one byte: half a status code (§5.5.1).
    OneByteClose,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::LengthTopBit => {
                f.write_str("a 64-bit length with its most significant bit set")
            }
            FrameError::TooLong { len, max } => {
                write!(f, "a {len}-byte payload, over the {max} bytes taken")
            }
            FrameError::OneByteClose => f.write_str("a one-byte close payload"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Turns a byte stream into whole frames, fed in whatever pieces the bytes came.
///
/// It buffers a frame until it is complete, so it takes a limit: a header announcing
/// more than `max_payload` bytes is an error, not an allocation. Once it has
/// returned an error it returns the same one again: the stream is lost.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    start: usize,
    max_payload: u64,
    failed: Option<FrameError>,
}

impl Decoder {
    /// A decoder taking payloads of at most `max_payload` bytes.
    pub fn new(max_payload: u64) -> Decoder {
        Decoder {
            buf: Vec::new(),
            start: 0,
            max_payload,
            failed: None,
        }
    }

    /// Takes the next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes fed and not yet part of a returned frame.
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// The header of the frame in progress, once its header bytes are all there.
    pub fn peek_header(&self) -> Option<Header> {
        Header::parse(self.pending()).map(|(header, _)| header)
    }

    /// The next whole frame, `None` if more bytes are needed, or why the bytes are
    /// not a frame.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let Some((header, size)) = Header::parse(self.pending()) else {
            return Ok(None);
        };
        let fail = if header.length == Length::Bits64 && header.len >> 63 != 0 {
            Some(FrameError::LengthTopBit)
        } else if header.len > self.max_payload {
            Some(FrameError::TooLong {
                len: header.len,
                max: self.max_payload,
            })
        } else {
            None
        };
        if let Some(e) = fail {
            self.failed = Some(e);
            return Err(e);
        }
        // Within max_payload, which a caller sized to fit in memory.
        let len = usize::try_from(header.len).unwrap_or(usize::MAX);
        let Some(payload) = self.pending().get(size..).and_then(|rest| rest.get(..len)) else {
            return Ok(None);
        };
        let mut payload = payload.to_vec();
        if let Some(key) = header.mask {
            apply_mask(key, 0, &mut payload);
        }
        self.start += size + len;
        Ok(Some(Frame { header, payload }))
    }

    /// Reads from `stream` until a whole frame is there and returns it; `Ok(None)`
    /// when the stream ends between two frames. An end in the middle of a frame is
    /// `UnexpectedEof`; bytes that are no frame are `InvalidData` carrying the
    /// [`FrameError`]. Bytes read past the frame stay in the decoder for the next
    /// call.
    pub fn read_frame(&mut self, stream: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(Some(frame));
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return match self.pending().is_empty() {
                    true => Ok(None),
                    false => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a frame",
                    )),
                };
            }
            self.feed(chunk.get(..n).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_form_round_trips_one_byte_at_a_time() {
        let mut wire = Vec::new();
        let sizes = [0usize, 1, 125, 126, 127, 65535, 65536, 70000];
        for (i, &n) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..n).map(|j| (j % 251) as u8).collect();
            let header = Header::new(BINARY, n as u64).masked([i as u8, 7, 0, 255]);
            wire.extend(encode(&header, &payload));
        }
        let mut d = Decoder::new(1 << 20);
        let mut got = Vec::new();
        for b in &wire {
            d.feed(std::slice::from_ref(b));
            while let Some(frame) = d.next_frame().unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got.len(), sizes.len());
        for (frame, &n) in got.iter().zip(&sizes) {
            assert_eq!(frame.payload.len(), n);
            assert_eq!(frame.header.length, Length::minimal(n as u64));
            assert!(
                frame
                    .payload
                    .iter()
                    .enumerate()
                    .all(|(j, &b)| b == (j % 251) as u8)
            );
        }
        assert!(d.pending().is_empty());
    }

    #[test]
    fn wrong_forms_are_written_as_asked() {
        let h = Header::new(TEXT, 5).length(Length::Bits64);
        let wire = encode(&h, b"hello");
        assert_eq!(&wire[..10], &[0x81, 127, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(
            h.violation(Role::Server),
            Some(Violation::NotMinimal(Length::Bits64, 5))
        );
        // A header that lies about its length.
        let wire = encode(
            &Header::new(TEXT, 5).announcing(200).length(Length::Bits16),
            b"hi",
        );
        assert_eq!(&wire[..4], &[0x81, 126, 0, 200]);
        let h = Header::new(PING, 0).fin(false).rsv(RSV2 | RSV3);
        assert_eq!(encode(&h, b"")[0], 0x39);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let mut top = vec![0x82, 0x80 | 127];
        top.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
        top.extend_from_slice(&[1, 2, 3, 4]);
        let mut d = Decoder::new(1 << 20);
        d.feed(&top);
        assert_eq!(d.next_frame(), Err(FrameError::LengthTopBit));
        assert_eq!(
            d.next_frame(),
            Err(FrameError::LengthTopBit),
            "the stream is lost"
        );
        let mut d = Decoder::new(100);
        d.feed(&[0x82, 126, 0x01, 0x00]);
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLong { len: 256, max: 100 })
        );
        // Every two-byte prefix decodes or asks for more, and never panics.
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                let mut d = Decoder::new(10);
                d.feed(&[b0, b1, 1, 2, 3]);
                let _ = d.next_frame();
            }
        }
        let close = Frame {
            header: Header::new(CLOSE, 1),
            payload: vec![3],
        };
        assert_eq!(close.close(), Some(Err(FrameError::OneByteClose)));
    }

    #[test]
    fn violations_name_the_rule() {
        assert_eq!(
            Header::new(TEXT, 1).violation(Role::Client),
            Some(Violation::Unmasked)
        );
        let m = [1, 2, 3, 4];
        assert_eq!(Header::new(TEXT, 1).violation(Role::Server), None);
        assert_eq!(Header::new(TEXT, 1).masked(m).violation(Role::Client), None);
        assert_eq!(
            Header::new(TEXT, 1).masked(m).violation(Role::Server),
            Some(Violation::Masked)
        );
        assert_eq!(
            Header::new(0xB, 0).violation(Role::Server),
            Some(Violation::ReservedOpcode(0xB))
        );
        assert_eq!(
            Header::new(PING, 126).violation(Role::Server),
            Some(Violation::ControlTooLong(126))
        );
        assert_eq!(
            Header::new(PING, 1).fin(false).violation(Role::Server),
            Some(Violation::ControlFragmented)
        );
        assert!(Violation::Rsv(RSV1).to_string().contains("§5.2"));
    }
}
