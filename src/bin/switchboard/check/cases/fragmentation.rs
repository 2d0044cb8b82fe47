//! Fragmentation (Autobahn 5.x): a message in several frames, control frames in
//! between, and the continuation frames that continue nothing.

use super::*;

const CONTROL_RULE: &str =
    "a control frame MUST NOT be fragmented; fail the connection (1002): RFC 6455 §5.5";
const ORPHAN_RULE: &str = "a continuation frame (opcode 0) with no message started MUST fail the connection (1002): RFC 6455 §5.4";
const REASSEMBLY_RULE: &str = "a message is its frames joined: the first one's opcode, then continuation frames up to FIN: RFC 6455 §5.4";
const INTERLEAVED_RULE: &str = "control frames MAY come between fragments and are answered at once; the message goes on after them: RFC 6455 §5.4";

pub(super) fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    for (id, opcode, name) in [("5.1", frame::PING, "Ping"), ("5.2", frame::PONG, "Pong")] {
        all.push(
            Case::autobahn(
                id,
                Area::Fragmentation,
                "§5.4, §5.5",
                format!("{name} fragmented into 2 frames"),
            )
            .rule(CONTROL_RULE)
            .script(
                vec![send(vec![
                    part(opcode, false, b"fragment1"),
                    part(frame::CONTINUATION, true, b"fragment2"),
                ])],
                Expect::fail(&[1002]),
            ),
        );
    }
    let two = || {
        vec![
            part(frame::TEXT, false, b"fragment1"),
            part(frame::CONTINUATION, true, b"fragment2"),
        ]
    };
    for (id, how, title) in [
        ("5.3", Chop::All, "text message in 2 fragments"),
        (
            "5.4",
            Chop::Frames,
            "text message in 2 fragments, frame by frame",
        ),
        (
            "5.5",
            Chop::Bytes(1),
            "text message in 2 fragments, byte by byte",
        ),
    ] {
        all.push(
            Case::autobahn(id, Area::Fragmentation, "§5.4", title)
                .rule(REASSEMBLY_RULE)
                .script(
                    vec![Step::Send(two(), how)],
                    Expect::echo(vec![text(b"fragment1fragment2")]),
                ),
        );
    }
    for (id, how, title) in [
        (
            "5.6",
            Chop::All,
            "text message in 2 fragments, a Ping between them",
        ),
        ("5.7", Chop::Frames, "the same, frame by frame"),
        ("5.8", Chop::Bytes(1), "the same, byte by byte"),
    ] {
        all.push(
            Case::autobahn(id, Area::Fragmentation, "§5.4", title)
                .rule(INTERLEAVED_RULE)
                .script(
                    vec![Step::Send(
                        vec![
                            part(frame::TEXT, false, b"fragment1"),
                            whole(frame::PING, b"ping payload"),
                            part(frame::CONTINUATION, true, b"fragment2"),
                        ],
                        how,
                    )],
                    Expect::echo(vec![pong(b"ping payload"), text(b"fragment1fragment2")]),
                ),
        );
    }
    // 5.9 to 5.14: a continuation first (FIN set or not), then a text message.
    for (n, fin, how, chops) in [
        (9, true, Chop::All, "in one write"),
        (10, true, Chop::Frames, "frame by frame"),
        (11, true, Chop::Bytes(1), "byte by byte"),
        (12, false, Chop::All, "in one write"),
        (13, false, Chop::Frames, "frame by frame"),
        (14, false, Chop::Bytes(1), "byte by byte"),
    ] {
        all.push(
            Case::autobahn(
                format!("5.{n}"),
                Area::Fragmentation,
                "§5.4",
                format!("continuation frame (FIN = {}) with nothing to continue, then a text message, {chops}", u8::from(fin)),
            )
            .rule(ORPHAN_RULE)
            .script(
                vec![Step::Send(
                    vec![part(frame::CONTINUATION, fin, b"non-continuation payload"), whole(frame::TEXT, b"Hello, world!")],
                    how,
                )],
                Expect::fail(&[1002]),
            ),
        );
    }
    all.push(
        Case::autobahn(
            "5.15",
            Area::Fragmentation,
            "§5.4",
            "message in 2 fragments, then a continuation with nothing to continue",
        )
        .rule(ORPHAN_RULE)
        .script(
            vec![send(vec![
                part(frame::TEXT, false, b"fragment1"),
                part(frame::CONTINUATION, true, b"fragment2"),
                part(frame::CONTINUATION, false, b"fragment3"),
                part(frame::TEXT, true, b"fragment4"),
            ])],
            Expect::fail(&[1002])
                .after(vec![text(b"fragment1fragment2")])
                .or_lenient_because(Vec::new(), IN_ORDER),
        ),
    );
    for (id, fin) in [("5.16", false), ("5.17", true)] {
        let mut frames = Vec::new();
        for _ in 0..2 {
            frames.push(part(frame::CONTINUATION, fin, b"fragment1"));
            frames.push(part(frame::TEXT, false, b"fragment2"));
            frames.push(part(frame::CONTINUATION, true, b"fragment3"));
        }
        all.push(
            Case::autobahn(
                id,
                Area::Fragmentation,
                "§5.4",
                format!("twice: continuation (FIN = {}) with nothing to continue, then a message in 2 fragments", u8::from(fin)),
            )
            .rule(ORPHAN_RULE)
            .script(vec![send(frames)], Expect::fail(&[1002])),
        );
    }
    all.push(
        Case::autobahn("5.18", Area::Fragmentation, "§5.4", "text message in 2 fragments, both with the text opcode")
            .rule("after the first frame of a message, every frame up to FIN has opcode 0 (continuation); fail the connection (1002): RFC 6455 §5.4")
            .script(
                vec![send(vec![part(frame::TEXT, false, b"fragment1"), part(frame::TEXT, true, b"fragment2")])],
                Expect::fail(&[1002]),
            ),
    );
    for (id, how, title) in [
        (
            "5.19",
            Chop::All,
            "text message in 5 fragments with 2 Pings between, the second half after a pause",
        ),
        ("5.20", Chop::Frames, "the same, frame by frame"),
    ] {
        let first = vec![
            part(frame::TEXT, false, b"fragment1"),
            part(frame::CONTINUATION, false, b"fragment2"),
            whole(frame::PING, b"pongme 1!"),
        ];
        let second = vec![
            part(frame::CONTINUATION, false, b"fragment3"),
            part(frame::CONTINUATION, false, b"fragment4"),
            whole(frame::PING, b"pongme 2!"),
            part(frame::CONTINUATION, true, b"fragment5"),
        ];
        all.push(
            Case::autobahn(id, Area::Fragmentation, "§5.4", title)
                .rule(format!("a Ping is answered at once, even in the middle of a message; {INTERLEAVED_RULE}"))
                .script(
                    vec![Step::Send(first, how), Step::Pause(Duration::from_millis(500), "A"), Step::Send(second, how)],
                    Expect::echo(vec![
                        pong(b"pongme 1!"),
                        Event::Timeout("A"),
                        pong(b"pongme 2!"),
                        text(b"fragment1fragment2fragment3fragment4fragment5"),
                    ]),
                ),
        );
    }

    // Beyond Autobahn.
    all.push(
        Case::plain(
            "5.21",
            Area::Fragmentation,
            "§5.4",
            "binary message in 3 fragments",
        )
        .rule(format!(
            "{REASSEMBLY_RULE}; the first frame's opcode (binary) is the message's"
        ))
        .script(
            vec![send(vec![
                part(frame::BINARY, false, &[1, 2]),
                part(frame::CONTINUATION, false, &[3, 4]),
                part(frame::CONTINUATION, true, &[5, 6]),
            ])],
            Expect::echo(vec![binary(&[1, 2, 3, 4, 5, 6])]),
        ),
    );
    all.push(
        Case::plain("5.22", Area::Fragmentation, "§5.4", "binary frame inside an unfinished text message")
            .rule("a new data frame before the fragmented message's FIN MUST fail the connection (1002): RFC 6455 §5.4")
            .script(
                vec![send(vec![part(frame::TEXT, false, b"first half"), whole(frame::BINARY, b"a new message")])],
                Expect::fail(&[1002]),
            ),
    );
    let pieces: Vec<Vec<u8>> = (0..100u32)
        .map(|i| {
            let opcode = if i == 0 {
                frame::TEXT
            } else {
                frame::CONTINUATION
            };
            part(opcode, i == 99, format!("{i:03}").as_bytes())
        })
        .collect();
    let whole_text: Vec<u8> = (0..100u32)
        .flat_map(|i| format!("{i:03}").into_bytes())
        .collect();
    all.push(
        Case::plain(
            "5.23",
            Area::Fragmentation,
            "§5.4",
            "text message in 100 fragments of 3 bytes",
        )
        .rule(REASSEMBLY_RULE)
        .script(vec![send(pieces)], Expect::echo(vec![text(&whole_text)])),
    );
    all.push(
        Case::plain("5.24", Area::Fragmentation, "§5.4, §5.5.1", "Close in the middle of a fragmented message")
            .rule("a Close may come between fragments; the unfinished message is dropped and the Close answered: RFC 6455 §5.4, §5.5.1")
            .script(
                vec![send(vec![part(frame::TEXT, false, b"never finished")]), Step::Close(Some(1000), Vec::new())],
                Expect::closing(&[1000], true),
            ),
    );
    all
}
