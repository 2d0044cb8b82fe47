//! TCP segmentation: TCP carries bytes, not frames. A frame may come a byte at a
//! time, split anywhere (in its header, its length, its masking key); several
//! frames may come in one segment. Autobahn's chopped cases touch this here and
//! there; these cases make it the point.

use super::*;

const STREAM_RULE: &str = "TCP delivers bytes, not frames: buffer until the header, then the whole payload, is in; never assume one read is one frame: RFC 6455 §5.2";

pub(super) fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    let sized = |len: usize| -> Vec<u8> { (0..len).map(|i| b'a' + (i % 26) as u8).collect() };
    for (n, len, what) in [
        (1, 5usize, "a 5-byte text frame (7-bit length)"),
        (2, 200, "a 200-byte text frame (16-bit length split)"),
        (3, 70_000, "a 70,000-byte text frame (64-bit length split)"),
    ] {
        let payload = sized(len);
        all.push(
            Case::plain(
                format!("8.1.{n}"),
                Area::Segmentation,
                "§5.2",
                format!("{what}, one byte per write"),
            )
            .rule(STREAM_RULE)
            .script(
                vec![Step::Send(
                    vec![whole(frame::TEXT, &payload)],
                    Chop::Bytes(1),
                )],
                Expect::echo(vec![text(&payload)]),
            ),
        );
    }
    // A frame split at each place its header can be split.
    let payload = sized(300);
    let bytes = whole(frame::BINARY, &payload);
    for (n, at, what) in [
        (1, 1, "after the first byte"),
        (2, 3, "inside the 16-bit length"),
        (3, 6, "inside the masking key"),
        (4, 8, "right after the header"),
    ] {
        let (a, b) = bytes.split_at(at);
        all.push(
            Case::plain(
                format!("8.2.{n}"),
                Area::Segmentation,
                "§5.2",
                format!("a 300-byte binary frame in two writes, split {what}"),
            )
            .rule(STREAM_RULE)
            .script(
                vec![
                    send(vec![a.to_vec()]),
                    Step::Wait(Duration::from_millis(50)),
                    send(vec![b.to_vec()]),
                ],
                Expect::echo(vec![binary(&payload)]),
            ),
        );
    }
    // Many frames in one segment.
    let many: Vec<Vec<u8>> = (0..100u32)
        .map(|i| match i % 3 {
            0 => format!("message {i}").into_bytes(),
            1 => i.to_be_bytes().to_vec(),
            _ => vec![b'x'; 126 + i as usize],
        })
        .collect();
    let opcode = |i: usize| {
        if i % 3 == 1 {
            frame::BINARY
        } else {
            frame::TEXT
        }
    };
    all.push(
        Case::plain(
            "8.3.1",
            Area::Segmentation,
            "§5.2",
            "100 messages of all three length forms in one write",
        )
        .rule(format!(
            "{STREAM_RULE}; and answer every frame a read brought, not only the first"
        ))
        .script(
            vec![send(
                many.iter()
                    .enumerate()
                    .map(|(i, p)| whole(opcode(i), p))
                    .collect(),
            )],
            Expect::echo(
                many.iter()
                    .enumerate()
                    .map(|(i, p)| Event::Message {
                        binary: opcode(i) == frame::BINARY,
                        payload: p.clone(),
                    })
                    .collect(),
            ),
        ),
    );
    all.push(
        Case::plain(
            "8.3.2",
            Area::Segmentation,
            "§5.2, §5.5.2",
            "a text, a binary and a text message in one write",
        )
        .rule(format!(
            "{STREAM_RULE}; and answer every frame a read brought, in order"
        ))
        .script(
            vec![send(vec![
                whole(frame::TEXT, b"first"),
                whole(frame::BINARY, b"second"),
                whole(frame::TEXT, b"third"),
            ])],
            Expect::echo(vec![text(b"first"), binary(b"second"), text(b"third")]),
        ),
    );
    all.push(
        Case::plain(
            "8.3.3",
            Area::Segmentation,
            "§5.2, §5.5.1",
            "a message and the Close in one write",
        )
        .rule(format!(
            "{STREAM_RULE}; the message before the Close is echoed, then the Close answered"
        ))
        .script(
            vec![Step::SendThenClose(
                vec![whole(frame::TEXT, b"last words")],
                close_payload(1000, b""),
            )],
            Expect::closing(&[1000], true)
                .after(vec![text(b"last words")])
                .or_lenient_because(Vec::new(), "the message before the Close was not echoed"),
        ),
    );
    // The end of one frame and the start of the next in one write.
    let two = [
        whole(frame::TEXT, b"one two three"),
        whole(frame::TEXT, b"four five six"),
    ]
    .concat();
    let (a, b) = two.split_at(25);
    all.push(
        Case::plain(
            "8.3.4",
            Area::Segmentation,
            "§5.2",
            "two frames in two writes, split inside the second frame",
        )
        .rule(STREAM_RULE)
        .script(
            vec![
                send(vec![a.to_vec()]),
                Step::Wait(Duration::from_millis(50)),
                send(vec![b.to_vec()]),
            ],
            Expect::echo(vec![text(b"one two three"), text(b"four five six")]),
        ),
    );
    all
}
