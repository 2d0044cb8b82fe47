//! Ping and Pong (Autobahn 2.x): a Ping is answered with a Pong carrying its
//! payload; an unsolicited Pong is ignored; a control frame is at most 125 bytes.

use super::*;

const PONG_RULE: &str =
    "answer a Ping with a Pong carrying the same payload: RFC 6455 §5.5.2, §5.5.3";

pub(super) fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    let pings: [(&str, &str, Vec<u8>, Chop); 4] = [
        ("2.1", "Ping without payload", Vec::new(), Chop::All),
        (
            "2.2",
            "Ping with a short text payload",
            b"Hello, world!".to_vec(),
            Chop::All,
        ),
        (
            "2.3",
            "Ping with a short binary payload",
            vec![0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff],
            Chop::All,
        ),
        (
            "2.4",
            "Ping with a binary payload of 125 bytes",
            vec![0xfe; 125],
            Chop::All,
        ),
    ];
    for (id, title, payload, how) in pings {
        all.push(
            Case::autobahn(id, Area::Control, "§5.5.2", title)
                .rule(PONG_RULE)
                .script(
                    vec![Step::Send(vec![whole(frame::PING, &payload)], how)],
                    Expect::echo(vec![pong(&payload)]),
                ),
        );
    }
    all.push(
        Case::autobahn("2.5", Area::Control, "§5.5", "Ping with a payload of 126 bytes")
            .rule("a control frame carries at most 125 bytes; fail the connection with 1002: RFC 6455 §5.5")
            .script(vec![send(vec![whole(frame::PING, &[0xfe; 126])])], Expect::fail(&[1002])),
    );
    all.push(
        Case::autobahn(
            "2.6",
            Area::Control,
            "§5.5.2",
            "Ping of 125 bytes sent one byte per write",
        )
        .rule(format!(
            "read a frame across as many reads as it takes; {PONG_RULE}"
        ))
        .script(
            vec![Step::Send(
                vec![whole(frame::PING, &[0xfe; 125])],
                Chop::Bytes(1),
            )],
            Expect::echo(vec![pong(&[0xfe; 125])]),
        ),
    );
    all.push(
        Case::autobahn(
            "2.7",
            Area::Control,
            "§5.5.3",
            "unsolicited Pong without payload, then Close",
        )
        .rule("an unsolicited Pong is ignored, then the Close answered: RFC 6455 §5.5.3")
        .script(
            vec![
                send(vec![whole(frame::PONG, b"")]),
                Step::Close(Some(1000), Vec::new()),
            ],
            Expect::echo(Vec::new()),
        ),
    );
    all.push(
        Case::autobahn(
            "2.8",
            Area::Control,
            "§5.5.3",
            "unsolicited Pong with payload, then Close",
        )
        .rule("an unsolicited Pong is ignored, then the Close answered: RFC 6455 §5.5.3")
        .script(
            vec![
                send(vec![whole(frame::PONG, b"unsolicited pong payload")]),
                Step::Close(Some(1000), Vec::new()),
            ],
            Expect::echo(Vec::new()),
        ),
    );
    all.push(
        Case::autobahn(
            "2.9",
            Area::Control,
            "§5.5.3",
            "unsolicited Pong, then a Ping",
        )
        .rule(format!("an unsolicited Pong is ignored; {PONG_RULE}"))
        .script(
            vec![send(vec![
                whole(frame::PONG, b"unsolicited pong payload"),
                whole(frame::PING, b"ping payload"),
            ])],
            Expect::echo(vec![pong(b"ping payload")]),
        ),
    );
    for (id, title, how) in [
        ("2.10", "ten Pings in one write", Chop::All),
        ("2.11", "ten Pings sent one byte per write", Chop::Bytes(1)),
    ] {
        let payloads: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("payload-{i}").into_bytes())
            .collect();
        all.push(
            Case::autobahn(id, Area::Control, "§5.5.2", title)
                .rule(format!("every Ping gets its Pong, in order (the RFC allows answering only the last; Autobahn and most servers answer each): {PONG_RULE}"))
                .script(
                    vec![Step::Send(payloads.iter().map(|p| whole(frame::PING, p)).collect(), how)],
                    Expect::echo(payloads.iter().map(|p| pong(p)).collect()),
                ),
        );
    }
    // Beyond Autobahn.
    all.push(
        Case::plain("2.12", Area::Control, "§5.5", "Ping with a 64-bit length of 5 bytes")
            .rule("a control frame's length is at most 125 and sits in the 7-bit form; a longer form is refused (1002) or read: RFC 6455 §5.5")
            .script(
                vec![send(vec![f(Header::new(frame::PING, 5).length(switchboard::frame::Length::Bits64), b"hello")])],
                Expect::echo(vec![pong(b"hello")]).refusal_is_info(),
            ),
    );
    all
}
