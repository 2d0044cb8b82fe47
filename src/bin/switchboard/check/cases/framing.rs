//! Framing (Autobahn 1.1, 1.2): text and binary messages at the edges of the three
//! length encodings; then lengths written in a longer form than needed (1.3) and
//! masking (1.4), which Autobahn does not check from the client side.

use super::*;
use switchboard::frame::Length;

/// The rule of the masking cases when a client is graded.
const MASKED_RULE: &str =
    "a client MUST close the connection when a server frame is masked (1002): RFC 6455 §5.1";

/// The rule each payload size exercises.
fn length_rule(len: usize) -> &'static str {
    match len {
        0..=125 => {
            "a length up to 125 sits in the 7 bits of the second byte: RFC 6455 §5.2, Payload length"
        }
        126..=65535 => {
            "a length of 126 means a 16-bit length follows (network byte order): RFC 6455 §5.2, Payload length"
        }
        _ => {
            "a length of 127 means a 64-bit length follows (network byte order): RFC 6455 §5.2, Payload length"
        }
    }
}

pub(super) fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    let sizes = [0usize, 125, 126, 127, 128, 65535, 65536];
    for (opcode, group, kind) in [(frame::TEXT, 1, "text"), (frame::BINARY, 2, "binary")] {
        let mut sizes: Vec<(usize, Option<usize>)> = sizes.iter().map(|&n| (n, None)).collect();
        sizes.push((65536, Some(997)));
        for (i, (len, chop)) in sizes.into_iter().enumerate() {
            let payload = match opcode {
                frame::TEXT => vec![b'*'; len],
                _ => vec![0xfe; len],
            };
            let expect = match opcode {
                frame::TEXT => text(&payload),
                _ => binary(&payload),
            };
            let how = match chop {
                Some(n) => Chop::Bytes(n),
                None => Chop::All,
            };
            let title = match chop {
                Some(n) => format!("{kind} message of {len} bytes, sent in writes of {n} bytes"),
                None => format!("{kind} message of {len} bytes"),
            };
            let echo_rule = match opcode {
                frame::TEXT => "an echo sends a text message back as text (opcode 0x1)",
                _ => "an echo sends a binary message back as binary (opcode 0x2), byte for byte",
            };
            all.push(
                Case::autobahn(
                    format!("1.{group}.{}", i + 1),
                    Area::Framing,
                    "§5.2, §5.6",
                    title,
                )
                .rule(if len == 0 {
                    echo_rule.to_owned()
                } else {
                    format!("{}; {echo_rule}", length_rule(len))
                })
                .script(
                    vec![Step::Send(vec![whole(opcode, &payload)], how)],
                    Expect::echo(vec![expect]),
                ),
            );
        }
    }

    // 1.3: lengths in a longer form than needed. RFC 6455 §5.2 asks the *sender* for
    // the minimal form; a receiver may take any, so echoing is a pass and refusing it
    // (1002) only information.
    let forms = [
        (
            1,
            5usize,
            Length::Bits16,
            "5 bytes announced in the 16-bit form",
        ),
        (2, 5, Length::Bits64, "5 bytes announced in the 64-bit form"),
        (
            3,
            200,
            Length::Bits64,
            "200 bytes announced in the 64-bit form",
        ),
        (
            4,
            0,
            Length::Bits16,
            "an empty message announced in the 16-bit form",
        ),
    ];
    for (n, len, form, title) in forms {
        let payload = repeat(b"longform", len);
        let bytes = f(
            Header::new(frame::BINARY, len as u64).length(form),
            &payload,
        );
        all.push(
            Case::plain(format!("1.3.{n}"), Area::Framing, "§5.2", format!("binary message of {title}"))
                .rule("the receiver reads the length in whatever form it comes: RFC 6455 §5.2, Payload length")
                .script(
                    vec![send(vec![bytes])],
                    Expect::echo(vec![binary(&payload)]).refusal_is_info(),
                ),
        );
    }
    // The top bit of a 64-bit length must be 0.
    let mut top = vec![0x82, 0x80 | 127];
    top.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    top.extend_from_slice(&KEY);
    top.extend_from_slice(b"hello");
    all.push(
        Case::plain("1.3.5", Area::Framing, "§5.2", "64-bit length with its most significant bit set")
            .rule("the most significant bit of a 64-bit length MUST be 0; fail the connection with 1002: RFC 6455 §5.2, Payload length")
            .script(vec![send(vec![top])], Expect::fail(&[1002])),
    );
    // Several messages, each length form, back to back in one write.
    let payloads: Vec<Vec<u8>> = [3usize, 125, 126, 300, 65536]
        .iter()
        .map(|&n| repeat(b"mixed", n))
        .collect();
    all.push(
        Case::plain(
            "1.3.6",
            Area::Framing,
            "§5.2",
            "five messages of 7-, 16- and 64-bit lengths in one write",
        )
        .rule("each frame's length says where the next frame starts: RFC 6455 §5.2")
        .script(
            vec![send(
                payloads.iter().map(|p| whole(frame::TEXT, p)).collect(),
            )],
            Expect::echo(payloads.iter().map(|p| text(p)).collect()),
        ),
    );

    // 1.4: masking (RFC 6455 §5.3). Client frames must be masked, and any key is a key.
    all.push(
        Case::plain("1.4.1", Area::Masking, "§5.1, §5.3", "unmasked text frame from the client")
            .rule(side_rule("a server MUST close the connection when a client frame is not masked (1002): RFC 6455 §5.1", MASKED_RULE))
            .script(vec![send(vec![wrongly_masked(Header::new(frame::TEXT, 5), b"hello")])], Expect::fail(&[1002])),
    );
    all.push(
        Case::plain("1.4.2", Area::Masking, "§5.1, §5.3", "unmasked binary frame of 200 bytes")
            .rule(side_rule("a server MUST close the connection when a client frame is not masked (1002): RFC 6455 §5.1", MASKED_RULE))
            .script(
                vec![send(vec![wrongly_masked(Header::new(frame::BINARY, 200), &[7; 200])])],
                Expect::fail(&[1002]),
            ),
    );
    all.push(
        Case::plain("1.4.3", Area::Masking, "§5.1, §5.3", "unmasked Ping")
            .rule(side_rule("every client frame is masked, control frames too; fail the connection (1002): RFC 6455 §5.1", MASKED_RULE))
            .script(vec![send(vec![wrongly_masked(Header::new(frame::PING, 4), b"ping")])], Expect::fail(&[1002])),
    );
    all.push(
        Case::plain("1.4.4", Area::Masking, "§5.1, §5.3", "echo, then an unmasked frame")
            .rule(side_rule("every client frame is masked, not only the first; fail the connection (1002): RFC 6455 §5.1", MASKED_RULE))
            .script(
                vec![send(vec![whole(frame::TEXT, b"masked"), wrongly_masked(Header::new(frame::TEXT, 8), b"unmasked")])],
                Expect::fail(&[1002]).after(vec![text(b"masked")]).or_lenient_because(Vec::new(), IN_ORDER),
            ),
    );
    let zero = keyed(Header::new(frame::TEXT, 11), [0; 4], b"zero key ok");
    all.push(
        Case::plain("1.4.5", Area::Masking, "§5.3", "masking key of four zero bytes")
            .rule("unmask with the key from the frame, whatever it is (all zeros leaves the payload as it is): RFC 6455 §5.3")
            .script(vec![send(vec![zero])], Expect::echo(vec![text(b"zero key ok")])),
    );
    let keys: Vec<Vec<u8>> = (0u8..8)
        .map(|i| {
            keyed(
                Header::new(frame::TEXT, 5),
                [i, 0xff - i, i * 31, 0x80 | i],
                format!("key {i}").as_bytes(),
            )
        })
        .collect();
    let expect: Vec<Event> = (0u8..8)
        .map(|i| text(format!("key {i}").as_bytes()))
        .collect();
    all.push(
        Case::plain(
            "1.4.6",
            Area::Masking,
            "§5.3",
            "eight frames, each with its own masking key",
        )
        .rule("each frame carries its own key; unmask each with its own: RFC 6455 §5.3")
        .script(vec![send(keys)], Expect::echo(expect)),
    );
    let long: Vec<u8> = (0..70_001u32).map(|i| (i % 253) as u8).collect();
    all.push(
        Case::plain(
            "1.4.7",
            Area::Masking,
            "§5.3",
            "a 70,001-byte masked binary frame: the key cycles over the whole payload",
        )
        .rule("byte i of the payload is XORed with byte i mod 4 of the key: RFC 6455 §5.3")
        .script(
            vec![send(vec![whole(frame::BINARY, &long)])],
            Expect::echo(vec![binary(&long)]),
        ),
    );
    all
}
