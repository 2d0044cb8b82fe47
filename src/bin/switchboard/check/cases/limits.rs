//! Large messages (Autobahn 9.1 to 9.8): up to 16 MiB in one frame, 4 MiB in
//! fragments from 64 bytes to 4 MiB, 1 MiB in writes of 64 bytes and up, and a
//! thousand round trips. Every echo is compared byte for byte (Autobahn compares
//! lengths only).

use super::*;

const BIG_RULE: &str = "echo the whole message: a server may limit message size (RFC 6455 §10.4, closing with 1009), but Autobahn's limits cases expect up to 16 MiB; raise the limit to pass (switchboard: --max-message-size 16777216)";

pub(super) fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    let sizes = [
        (64usize << 10, "64 KiB"),
        (256 << 10, "256 KiB"),
        (1 << 20, "1 MiB"),
        (4 << 20, "4 MiB"),
        (8 << 20, "8 MiB"),
        (16 << 20, "16 MiB"),
    ];
    for (group, opcode, kind, pattern) in [
        (1, frame::TEXT, "text", b"BAsd7&jh23".as_slice()),
        (
            2,
            frame::BINARY,
            "binary",
            b"\x00\xfe\x23\xfa\xf0".as_slice(),
        ),
    ] {
        for (i, &(len, name)) in sizes.iter().enumerate() {
            all.push(
                Case::autobahn(
                    format!("9.{group}.{}", i + 1),
                    Area::Limits,
                    "§5.2, §10.4",
                    format!("{kind} message of {name} in one frame"),
                )
                .rule(BIG_RULE)
                .big()
                .lazy(move || {
                    let payload = repeat(pattern, len);
                    let frames = vec![whole(opcode, &payload)];
                    let event = Event::Message {
                        binary: opcode == frame::BINARY,
                        payload,
                    };
                    script(vec![send(frames)], Expect::echo(vec![event]))
                }),
            );
        }
    }
    let fragments = [
        64usize,
        256,
        1 << 10,
        4 << 10,
        16 << 10,
        64 << 10,
        256 << 10,
        1 << 20,
        4 << 20,
    ];
    for (group, opcode, kind, byte) in [
        (3, frame::TEXT, "text", b'*'),
        (4, frame::BINARY, "binary", 0xfe),
    ] {
        for (i, &size) in fragments.iter().enumerate() {
            all.push(
                Case::autobahn(
                    format!("9.{group}.{}", i + 1),
                    Area::Limits,
                    "§5.4, §10.4",
                    format!("{kind} message of 4 MiB in fragments of {}", human(size)),
                )
                .rule(format!("join the fragments, however many; {BIG_RULE}"))
                .big()
                .lazy(move || {
                    let payload = vec![byte; 4 << 20];
                    let frames: Vec<Vec<u8>> = payload
                        .chunks(size)
                        .enumerate()
                        .map(|(n, chunk)| {
                            let first = if n == 0 { opcode } else { frame::CONTINUATION };
                            part(first, (n + 1) * size >= payload.len(), chunk)
                        })
                        .collect();
                    let event = Event::Message {
                        binary: opcode == frame::BINARY,
                        payload,
                    };
                    script(vec![send(frames)], Expect::echo(vec![event]))
                }),
            );
        }
    }
    let chops = [64usize, 128, 256, 512, 1024, 2048];
    for (group, opcode, kind, pattern) in [
        (5, frame::TEXT, "text", b"BAsd7&jh23".as_slice()),
        (
            6,
            frame::BINARY,
            "binary",
            b"\x00\xfe\x23\xfa\xf0".as_slice(),
        ),
    ] {
        for (i, &chop) in chops.iter().enumerate() {
            all.push(
                Case::autobahn(format!("9.{group}.{}", i + 1), Area::Limits, "§5.2", format!("{kind} message of 1 MiB in writes of {chop} bytes"))
                    .rule(format!("a frame arrives in as many reads as TCP likes: keep reading until the length is in; {BIG_RULE}"))
                    .big()
                    .lazy(move || {
                        let payload = repeat(pattern, 1 << 20);
                        let frames = vec![whole(opcode, &payload)];
                        let event = Event::Message { binary: opcode == frame::BINARY, payload };
                        script(vec![Step::Send(frames, Chop::Bytes(chop))], Expect::echo(vec![event]))
                    }),
            );
        }
    }
    let round_trips = [0usize, 16, 64, 256, 1024, 4096];
    for (group, opcode, kind, byte) in [
        (7, frame::TEXT, "text", b'*'),
        (8, frame::BINARY, "binary", 0xfe),
    ] {
        for (i, len) in round_trips.iter().enumerate() {
            let payload = vec![byte; *len];
            let event = Event::Message {
                binary: opcode == frame::BINARY,
                payload: payload.clone(),
            };
            all.push(
                Case::autobahn(
                    format!("9.{group}.{}", i + 1),
                    Area::Limits,
                    "§5.6",
                    format!("1000 {kind} messages of {len} bytes, one round trip each"),
                )
                .rule("echo every message, one after the other, each as it came: RFC 6455 §5.6")
                .script(
                    vec![Step::RoundTrips {
                        opcode,
                        payload,
                        count: 1000,
                    }],
                    Expect::echo(vec![event; 1000]),
                ),
            );
        }
    }
    all
}

fn human(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}
