//! Reserved bits (Autobahn 3.x) and reserved opcodes (4.x): with no extension
//! negotiated, an RSV bit or an unknown opcode fails the connection (1002).

use super::*;
use switchboard::frame::{RSV1, RSV2, RSV3};

const RSV_RULE: &str = "with no extension negotiated, a frame with an RSV bit set MUST fail the connection (1002): RFC 6455 §5.2";
const OPCODE_RULE: &str =
    "an unknown opcode MUST fail the connection (1002): RFC 6455 §5.2, Opcode";

pub(super) fn cases() -> Vec<Case> {
    let hello = b"Hello, world!";
    let mut all = Vec::new();
    all.push(
        Case::autobahn("3.1", Area::Reserved, "§5.2", "text message with RSV = 1")
            .rule(RSV_RULE)
            .script(
                vec![send(vec![f(Header::new(frame::TEXT, 13).rsv(RSV3), hello)])],
                Expect::fail(&[1002]),
            ),
    );
    // 3.2 to 3.4: a good message first, then the bad one, then a Ping never answered.
    for (id, rsv, how, title) in [
        (
            "3.2",
            RSV2,
            Chop::All,
            "text message, then one with RSV = 2, then a Ping",
        ),
        (
            "3.3",
            RSV2 | RSV3,
            Chop::Frames,
            "the same with RSV = 3, frame by frame",
        ),
        (
            "3.4",
            RSV1,
            Chop::Bytes(1),
            "the same with RSV = 4, byte by byte",
        ),
    ] {
        all.push(
            Case::autobahn(id, Area::Reserved, "§5.2", title)
                .rule(RSV_RULE)
                .script(
                    vec![Step::Send(
                        vec![
                            whole(frame::TEXT, hello),
                            f(Header::new(frame::TEXT, 13).rsv(rsv), hello),
                            whole(frame::PING, b""),
                        ],
                        how,
                    )],
                    Expect::fail(&[1002])
                        .after(vec![text(hello)])
                        .or_lenient_because(Vec::new(), IN_ORDER),
                ),
        );
    }
    let bin = [0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff];
    all.push(
        Case::autobahn("3.5", Area::Reserved, "§5.2", "binary message with RSV = 5")
            .rule(RSV_RULE)
            .script(
                vec![send(vec![f(
                    Header::new(frame::BINARY, 8).rsv(RSV1 | RSV3),
                    &bin,
                )])],
                Expect::fail(&[1002]),
            ),
    );
    all.push(
        Case::autobahn("3.6", Area::Reserved, "§5.2", "Ping with RSV = 6")
            .rule(RSV_RULE)
            .script(
                vec![send(vec![f(
                    Header::new(frame::PING, 13).rsv(RSV1 | RSV2),
                    hello,
                )])],
                Expect::fail(&[1002]),
            ),
    );
    all.push(
        Case::autobahn("3.7", Area::Reserved, "§5.2", "Close with RSV = 7")
            .rule(RSV_RULE)
            .script(
                vec![send(vec![f(
                    Header::new(frame::CLOSE, 0).rsv(RSV1 | RSV2 | RSV3),
                    b"",
                )])],
                Expect::fail(&[1002]),
            ),
    );

    // 4.1: reserved data opcodes 3 to 7; 4.2: reserved control opcodes 11 to 15.
    for (group, opcodes, kind) in [
        (1, [3u8, 4, 5, 6, 7], "non-control"),
        (2, [11, 12, 13, 14, 15], "control"),
    ] {
        for (i, opcode) in opcodes.into_iter().enumerate() {
            let id = format!("4.{group}.{}", i + 1);
            let payload: &[u8] = if i % 2 == 1 || i == 4 {
                b"reserved opcode payload"
            } else {
                b""
            };
            let case = match i {
                0 | 1 => Case::autobahn(
                    id,
                    Area::Reserved,
                    "§5.2",
                    format!("frame with reserved {kind} opcode {opcode}"),
                )
                .rule(OPCODE_RULE)
                .script(
                    vec![send(vec![whole(opcode, payload)])],
                    Expect::fail(&[1002]),
                ),
                _ => {
                    let how = if i == 4 { Chop::Bytes(1) } else { Chop::All };
                    Case::autobahn(
                        id,
                        Area::Reserved,
                        "§5.2",
                        format!("text message, then reserved {kind} opcode {opcode}, then a Ping"),
                    )
                    .rule(OPCODE_RULE)
                    .script(
                        vec![Step::Send(
                            vec![
                                whole(frame::TEXT, hello),
                                whole(opcode, payload),
                                whole(frame::PING, b""),
                            ],
                            how,
                        )],
                        Expect::fail(&[1002])
                            .after(vec![text(hello)])
                            .or_lenient_because(Vec::new(), IN_ORDER),
                    )
                }
            };
            all.push(case);
        }
    }
    all
}
