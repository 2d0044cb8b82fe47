//! UTF-8 (Autobahn 6.x): text messages must be valid UTF-8, whole and across
//! fragments; invalid text fails the connection with 1007, as soon as it is seen
//! (6.4, "fail fast"). 6.5 to 6.23 are Markus Kuhn's UTF-8 decoder stress test,
//! sequence by sequence, exactly as Autobahn numbers them.

use super::*;

const VALID_RULE: &str =
    "valid UTF-8 text is echoed as it came, whatever the fragments: RFC 6455 §5.6";
const INVALID_RULE: &str = "a text message that is not valid UTF-8 MUST fail the connection with 1007: RFC 6455 §8.1, §5.6";
const FAST_RULE: &str = "fail the connection (1007) as soon as the bytes so far cannot start valid UTF-8, before the message ends: RFC 6455 §8.1";

/// κόσμε, as Autobahn spells it.
const KOSME: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";

/// The sequences of Autobahn's `createUtf8TestSequences`: per group, its title and
/// (valid?, bytes).
/// A group of sequences: its title, and each sequence with whether it is valid.
type Group = (&'static str, Vec<(bool, Vec<u8>)>);

fn sequences() -> Vec<Group> {
    let v = |b: &[u8]| (true, b.to_vec());
    let x = |b: &[u8]| (false, b.to_vec());
    let mut groups = vec![(
        "some valid UTF-8 sequences",
        vec![
            v(b"hello\x24world"),
            v(b"hello\xc2\xa2world"),
            v(b"hello\xe2\x82\xacworld"),
            v(b"hello\xf0\xa4\xad\xa2world"),
            v(KOSME),
        ],
    )];
    groups.push((
        "all prefixes of a valid string with multi-byte code points",
        (1..=KOSME.len())
            .map(|n| {
                (
                    std::str::from_utf8(&KOSME[..n]).is_ok(),
                    KOSME[..n].to_vec(),
                )
            })
            .collect(),
    ));
    groups.push((
        "first possible sequence of each length",
        vec![
            v(b"\x00"),
            v(b"\xc2\x80"),
            v(b"\xe0\xa0\x80"),
            v(b"\xf0\x90\x80\x80"),
        ],
    ));
    groups.push((
        "first possible sequences of length 5 and 6 (not UTF-8)",
        vec![x(b"\xf8\x88\x80\x80\x80"), x(b"\xfc\x84\x80\x80\x80\x80")],
    ));
    groups.push((
        "last possible sequence of each length",
        vec![
            v(b"\x7f"),
            v(b"\xdf\xbf"),
            v(b"\xef\xbf\xbf"),
            v(b"\xf4\x8f\xbf\xbf"),
        ],
    ));
    groups.push((
        "last possible sequences of length 4, 5, 6 (past U+10FFFF)",
        vec![
            x(b"\xf7\xbf\xbf\xbf"),
            x(b"\xfb\xbf\xbf\xbf\xbf"),
            x(b"\xfd\xbf\xbf\xbf\xbf\xbf"),
        ],
    ));
    groups.push((
        "other boundary conditions",
        vec![
            v(b"\xed\x9f\xbf"),
            v(b"\xee\x80\x80"),
            v(b"\xef\xbf\xbd"),
            v(b"\xf4\x8f\xbf\xbf"),
            x(b"\xf4\x90\x80\x80"),
        ],
    ));
    let all_continuations: Vec<u8> = (0x80..0xbf).collect();
    groups.push((
        "unexpected continuation bytes",
        vec![
            x(b"\x80"),
            x(b"\xbf"),
            x(b"\x80\xbf"),
            x(b"\x80\xbf\x80"),
            x(b"\x80\xbf\x80\xbf"),
            x(b"\x80\xbf\x80\xbf\x80"),
            x(b"\x80\xbf\x80\xbf\x80\xbf"),
            x(&all_continuations),
        ],
    ));
    let lonely = |from: u8, to: u8| -> Vec<u8> { (from..to).flat_map(|b| [b, 0x20]).collect() };
    groups.push((
        "lonely start bytes",
        vec![
            x(&lonely(0xc0, 0xdf)),
            x(&lonely(0xe0, 0xef)),
            x(&lonely(0xf0, 0xf7)),
            x(&lonely(0xf8, 0xfb)),
            x(&lonely(0xfc, 0xfd)),
        ],
    ));
    let missing: [&[u8]; 10] = [
        b"\xc0",
        b"\xe0\x80",
        b"\xf0\x80\x80",
        b"\xf8\x80\x80\x80",
        b"\xfc\x80\x80\x80\x80",
        b"\xdf",
        b"\xef\xbf",
        b"\xf7\xbf\xbf",
        b"\xfb\xbf\xbf\xbf",
        b"\xfd\xbf\xbf\xbf\xbf",
    ];
    groups.push((
        "sequences with the last continuation byte missing",
        missing.iter().map(|m| x(m)).collect(),
    ));
    groups.push((
        "concatenation of incomplete sequences",
        vec![x(&missing.concat())],
    ));
    groups.push((
        "impossible bytes",
        vec![x(b"\xfe"), x(b"\xff"), x(b"\xfe\xfe\xff\xff")],
    ));
    groups.push((
        "overlong ASCII characters",
        vec![
            x(b"\xc0\xaf"),
            x(b"\xe0\x80\xaf"),
            x(b"\xf0\x80\x80\xaf"),
            x(b"\xf8\x80\x80\x80\xaf"),
            x(b"\xfc\x80\x80\x80\x80\xaf"),
        ],
    ));
    groups.push((
        "maximum overlong sequences",
        vec![
            x(b"\xc1\xbf"),
            x(b"\xe0\x9f\xbf"),
            x(b"\xf0\x8f\xbf\xbf"),
            x(b"\xf8\x87\xbf\xbf\xbf"),
            x(b"\xfc\x83\xbf\xbf\xbf\xbf"),
        ],
    ));
    groups.push((
        "overlong NUL",
        vec![
            x(b"\xc0\x80"),
            x(b"\xe0\x80\x80"),
            x(b"\xf0\x80\x80\x80"),
            x(b"\xf8\x80\x80\x80\x80"),
            x(b"\xfc\x80\x80\x80\x80\x80"),
        ],
    ));
    groups.push((
        "single UTF-16 surrogates",
        vec![
            x(b"\xed\xa0\x80"),
            x(b"\xed\xad\xbf"),
            x(b"\xed\xae\x80"),
            x(b"\xed\xaf\xbf"),
            x(b"\xed\xb0\x80"),
            x(b"\xed\xbe\x80"),
            x(b"\xed\xbf\xbf"),
        ],
    ));
    groups.push((
        "paired UTF-16 surrogates",
        vec![
            x(b"\xed\xa0\x80\xed\xb0\x80"),
            x(b"\xed\xa0\x80\xed\xbf\xbf"),
            x(b"\xed\xad\xbf\xed\xb0\x80"),
            x(b"\xed\xad\xbf\xed\xbf\xbf"),
            x(b"\xed\xae\x80\xed\xb0\x80"),
            x(b"\xed\xae\x80\xed\xbf\xbf"),
            x(b"\xed\xaf\xbf\xed\xb0\x80"),
            x(b"\xed\xaf\xbf\xed\xbf\xbf"),
        ],
    ));
    let mut nonchars = vec![v(b"\xef\xbf\xbe"), v(b"\xef\xbf\xbf")];
    for z1 in [0xf0u8, 0xf1, 0xf2, 0xf3, 0xf4] {
        for z2 in [0x8fu8, 0x9f, 0xaf, 0xbf] {
            if z1 == 0xf4 && z2 != 0x8f {
                continue; // past U+10FFFF
            }
            for z3 in [0xbeu8, 0xbf] {
                let seq = [z1, z2, 0xbf, z3];
                if z1 == 0xf0 && z2 == 0x8f {
                    continue; // overlong
                }
                nonchars.push(v(&seq));
            }
        }
    }
    groups.push(("non-character code points (valid UTF-8)", nonchars));
    groups.push((
        "Unicode specials, the replacement character among them",
        [0xb9u8, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf]
            .iter()
            .map(|&b| v(&[0xef, 0xbf, b]))
            .collect(),
    ));
    groups
}

pub(super) fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.push(
        Case::autobahn("6.1.1", Area::Utf8, "§5.6", "empty text message")
            .rule(VALID_RULE)
            .script(
                vec![send(vec![whole(frame::TEXT, b"")])],
                Expect::echo(vec![text(b"")]),
            ),
    );
    all.push(
        Case::autobahn(
            "6.1.2",
            Area::Utf8,
            "§5.4, §5.6",
            "text message in 3 empty fragments",
        )
        .rule(REASSEMBLY)
        .script(
            vec![send(vec![
                part(frame::TEXT, false, b""),
                part(frame::CONTINUATION, false, b""),
                part(frame::CONTINUATION, true, b""),
            ])],
            Expect::echo(vec![text(b"")]),
        ),
    );
    all.push(
        Case::autobahn(
            "6.1.3",
            Area::Utf8,
            "§5.4, §5.6",
            "text message in 3 fragments, first and last empty",
        )
        .rule(REASSEMBLY)
        .script(
            vec![send(vec![
                part(frame::TEXT, false, b""),
                part(frame::CONTINUATION, false, b"middle frame payload"),
                part(frame::CONTINUATION, true, b""),
            ])],
            Expect::echo(vec![text(b"middle frame payload")]),
        ),
    );
    let hello = "Hello-µ@ßöäüàá-UTF-8!!".as_bytes();
    all.push(
        Case::autobahn("6.2.1", Area::Utf8, "§5.6", "valid UTF-8 text in one frame")
            .rule(VALID_RULE)
            .script(
                vec![send(vec![whole(frame::TEXT, hello)])],
                Expect::echo(vec![text(hello)]),
            ),
    );
    let (a, b) = ("Hello-µ@ßöä".as_bytes(), "üàá-UTF-8!!".as_bytes());
    all.push(
        Case::autobahn(
            "6.2.2",
            Area::Utf8,
            "§5.6",
            "valid UTF-8 text in 2 fragments split on a code point boundary",
        )
        .rule(VALID_RULE)
        .script(
            vec![send(vec![
                part(frame::TEXT, false, a),
                part(frame::CONTINUATION, true, b),
            ])],
            Expect::echo(vec![text(&[a, b].concat())]),
        ),
    );
    for (id, payload) in [("6.2.3", hello), ("6.2.4", KOSME)] {
        all.push(
            Case::autobahn(
                id,
                Area::Utf8,
                "§5.6, §8.1",
                "valid UTF-8 text in fragments of 1 byte, split inside code points",
            )
            .rule(format!(
                "validate UTF-8 over the whole message, not frame by frame; {VALID_RULE}"
            ))
            .script(
                vec![send(one_byte_fragments(payload))],
                Expect::echo(vec![text(payload)]),
            ),
        );
    }
    let bad = [KOSME, b"\xed\xa0\x80", b"edited"].concat();
    all.push(
        Case::autobahn(
            "6.3.1",
            Area::Utf8,
            "§8.1",
            "invalid UTF-8 text in one frame",
        )
        .rule(INVALID_RULE)
        .script(
            vec![send(vec![whole(frame::TEXT, &bad)])],
            Expect::fail(&[1007]),
        ),
    );
    all.push(
        Case::autobahn(
            "6.3.2",
            Area::Utf8,
            "§8.1",
            "invalid UTF-8 text in fragments of 1 byte",
        )
        .rule(INVALID_RULE)
        .script(vec![send(one_byte_fragments(&bad))], Expect::fail(&[1007])),
    );

    // 6.4: fail fast. Three parts with pauses between: failing after the second is a
    // pass, after the third only lenient.
    let bad = [KOSME, b"\xf4\x90\x80\x80", b"edited"].concat();
    let parts_of = |cut: (usize, usize)| {
        (
            bad[..cut.0].to_vec(),
            bad[cut.0..cut.1].to_vec(),
            bad[cut.1..].to_vec(),
        )
    };
    for (id, cut, whole_frame, title) in [
        (
            "6.4.1",
            (11, 15),
            false,
            "invalid UTF-8 in the second of 3 frames, with pauses",
        ),
        (
            "6.4.2",
            (12, 13),
            false,
            "the same, the second frame holding only the invalid byte",
        ),
        (
            "6.4.3",
            (11, 15),
            true,
            "invalid UTF-8 in the second of 3 writes of one frame, with pauses",
        ),
        (
            "6.4.4",
            (12, 13),
            true,
            "the same, the second write holding only the invalid byte",
        ),
    ] {
        let (p1, p2, p3) = parts_of(cut);
        let steps = if whole_frame {
            let bytes = whole(frame::TEXT, &bad);
            let head = bytes.len() - bad.len();
            let (w1, rest) = bytes.split_at(head + p1.len());
            let (w2, w3) = rest.split_at(p2.len());
            vec![
                Step::Send(vec![w1.to_vec()], Chop::All),
                Step::Pause(PAUSE, "A"),
                Step::Send(vec![w2.to_vec()], Chop::All),
                Step::Pause(PAUSE, "B"),
                Step::Send(vec![w3.to_vec()], Chop::All),
            ]
        } else {
            vec![
                send(vec![part(frame::TEXT, false, &p1)]),
                Step::Pause(PAUSE, "A"),
                send(vec![part(frame::CONTINUATION, false, &p2)]),
                Step::Pause(PAUSE, "B"),
                send(vec![part(frame::CONTINUATION, true, &p3)]),
            ]
        };
        all.push(
            Case::autobahn(id, Area::Utf8, "§8.1", title)
                .rule(FAST_RULE)
                .script(
                    steps,
                    Expect::fail(&[1007])
                        .after(vec![Event::Timeout("A")])
                        .or_lenient_because(
                            vec![Event::Timeout("A"), Event::Timeout("B")],
                            "the connection was failed only once the message was whole, not as soon as the invalid byte came",
                        ),
                ),
        );
    }

    for (g, (group, seqs)) in sequences().into_iter().enumerate() {
        for (i, (valid, payload)) in seqs.into_iter().enumerate() {
            let id = format!("6.{}.{}", g + 5, i + 1);
            let hex: String = payload
                .iter()
                .take(12)
                .map(|b| format!("{b:02x}"))
                .collect();
            let more = if payload.len() > 12 { "…" } else { "" };
            let what = if valid { "valid" } else { "invalid" };
            let case = Case::autobahn(
                id,
                Area::Utf8,
                "§8.1",
                format!("{group}: {what} {hex}{more}"),
            );
            all.push(match valid {
                true => case.rule(VALID_RULE).script(
                    vec![send(vec![whole(frame::TEXT, &payload)])],
                    Expect::echo(vec![text(&payload)]),
                ),
                false => case.rule(INVALID_RULE).script(
                    vec![send(vec![whole(frame::TEXT, &payload)])],
                    Expect::fail(&[1007]),
                ),
            });
        }
    }
    all
}

/// How long 6.4 waits between parts (Autobahn waits 1 s; on a LAN half that tells).
const PAUSE: Duration = Duration::from_millis(500);

const REASSEMBLY: &str =
    "empty fragments are fragments too: the message is their payloads joined: RFC 6455 §5.4";

/// `payload` as a text message in frames of one byte each.
fn one_byte_fragments(payload: &[u8]) -> Vec<Vec<u8>> {
    let last = payload.len().saturating_sub(1);
    payload
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let opcode = if i == 0 {
                frame::TEXT
            } else {
                frame::CONTINUATION
            };
            part(opcode, i == last, std::slice::from_ref(b))
        })
        .collect()
}
