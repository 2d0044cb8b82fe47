//! The closing handshake (Autobahn 7.x): a Close is answered with a Close, nothing
//! is processed after it, its payload is a valid code and a UTF-8 reason, and the
//! server closes the TCP connection at the end.

use super::*;

const ANSWER_RULE: &str = "answer a Close with a Close (echoing its code, or 1000), process nothing after it, then close TCP: RFC 6455 §5.5.1, §7.1.1";
const BAD_PAYLOAD_RULE: &str = "a Close payload is empty, or a 2-byte code then a UTF-8 reason, at most 125 bytes in all; answer anything else with 1002 (or drop TCP): RFC 6455 §5.5.1";
const INVALID_CODE_RULE: &str = "close codes below 1000, 1004-1006, 1015 and 1016-2999 are not sent on the wire; answer one with 1002: RFC 6455 §7.4.1, §7.4.2";
const VALID_CODE_RULE: &str =
    "a Close with a valid code is answered with the same code or 1000: RFC 6455 §5.5.1, §7.4.1";

pub(super) fn cases() -> Vec<Case> {
    let hello = b"Hello World!";
    let mut all = Vec::new();
    all.push(
        Case::autobahn(
            "7.1.1",
            Area::Closing,
            "§5.5.1",
            "a message, then a clean close",
        )
        .rule(ANSWER_RULE)
        .script(
            vec![send(vec![whole(frame::TEXT, hello)])],
            Expect::echo(vec![text(hello)]).wrong_code_fails(),
        ),
    );
    let after_close: [(&str, &str, Vec<Vec<u8>>); 3] = [
        ("7.1.2", "two Close frames", vec![whole(frame::CLOSE, b"")]),
        (
            "7.1.3",
            "a Ping after the Close",
            vec![whole(frame::PING, b"")],
        ),
        (
            "7.1.4",
            "a text message after the Close",
            vec![whole(frame::TEXT, hello)],
        ),
    ];
    for (id, title, after) in after_close {
        all.push(
            Case::autobahn(id, Area::Closing, "§5.5.1", title)
                .rule(ANSWER_RULE)
                .script(
                    vec![Step::Close(Some(1000), Vec::new()), send(after)],
                    Expect::closing(&[1000], true),
                ),
        );
    }
    all.push(
        Case::autobahn(
            "7.1.5",
            Area::Closing,
            "§5.5.1",
            "a fragment, the Close, then the last fragment",
        )
        .rule(ANSWER_RULE)
        .script(
            vec![
                send(vec![part(frame::TEXT, false, b"fragment1")]),
                Step::Close(Some(1000), Vec::new()),
                send(vec![part(frame::CONTINUATION, true, b"fragment2")]),
            ],
            Expect::closing(&[1000], true),
        ),
    );
    let big = repeat(b"BAsd7&jh23", 256 * 1024);
    all.push(
        Case::autobahn("7.1.6", Area::Closing, "§5.5.1", "a 256 KiB message, a small one, the Close, then a Ping")
            .rule("the RFC does not say whether messages sent before a Close are echoed once the Close is in")
            .script(
                vec![
                    send(vec![whole(frame::TEXT, &big), whole(frame::TEXT, hello)]),
                    Step::Close(Some(1000), Vec::new()),
                    send(vec![whole(frame::PING, b"")]),
                ],
                Expect::closing(&[1000], true).informational(),
            ),
    );
    all.push(
        Case::autobahn(
            "7.3.1",
            Area::Closing,
            "§5.5.1",
            "Close with an empty payload",
        )
        .rule(ANSWER_RULE)
        .script(
            vec![Step::Close(None, Vec::new())],
            Expect::closing(&[1000], true),
        ),
    );
    all.push(
        Case::autobahn(
            "7.3.2",
            Area::Closing,
            "§5.5.1",
            "Close with a 1-byte payload",
        )
        .rule(BAD_PAYLOAD_RULE)
        .script(vec![Step::CloseRaw(b"a".to_vec())], close_bad()),
    );
    all.push(
        Case::autobahn("7.3.3", Area::Closing, "§5.5.1", "Close with code 1000")
            .rule(ANSWER_RULE)
            .script(
                vec![Step::Close(Some(1000), Vec::new())],
                Expect::closing(&[1000], true),
            ),
    );
    all.push(
        Case::autobahn(
            "7.3.4",
            Area::Closing,
            "§5.5.1",
            "Close with code 1000 and a reason",
        )
        .rule(ANSWER_RULE)
        .script(
            vec![Step::Close(Some(1000), hello.to_vec())],
            Expect::closing(&[1000], true),
        ),
    );
    all.push(
        Case::autobahn(
            "7.3.5",
            Area::Closing,
            "§5.5.1",
            "Close with code 1000 and a reason of 123 bytes (the most)",
        )
        .rule(ANSWER_RULE)
        .script(
            vec![Step::Close(Some(1000), vec![b'*'; 123])],
            Expect::closing(&[1000], true),
        ),
    );
    all.push(
        Case::autobahn(
            "7.3.6",
            Area::Closing,
            "§5.5",
            "Close with a reason of 124 bytes: a 126-byte control frame",
        )
        .rule(BAD_PAYLOAD_RULE)
        .script(
            vec![Step::CloseRaw(close_payload(1000, &[b'*'; 124]))],
            close_bad(),
        ),
    );
    let bad_reason = [
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80".as_slice(),
        b"edited",
    ]
    .concat();
    all.push(
        Case::autobahn("7.5.1", Area::Closing, "§5.5.1, §8.1", "Close with a reason that is not UTF-8")
            .rule("a close reason is UTF-8; answer one that is not with 1007 or 1002 (or drop TCP): RFC 6455 §5.5.1, §8.1")
            .script(
                vec![Step::CloseRaw(close_payload(1000, &bad_reason))],
                Expect::closing(&[1002, 1007], false),
            ),
    );
    for (i, code) in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ]
    .into_iter()
    .enumerate()
    {
        all.push(
            Case::autobahn(
                format!("7.7.{}", i + 1),
                Area::Closing,
                "§7.4.1",
                format!("Close with valid code {code}"),
            )
            .rule(VALID_CODE_RULE)
            .script(
                vec![Step::Close(Some(code), Vec::new())],
                Expect::closing(&[1000, code], true),
            ),
        );
    }
    for (i, code) in [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999]
        .into_iter()
        .enumerate()
    {
        all.push(
            Case::autobahn(
                format!("7.9.{}", i + 1),
                Area::Closing,
                "§7.4.1, §7.4.2",
                format!("Close with invalid code {code}"),
            )
            .rule(INVALID_CODE_RULE)
            .script(
                vec![Step::Close(Some(code), Vec::new())],
                Expect::closing(&[1002], false),
            ),
        );
    }
    for (i, code) in [5000u16, 65535].into_iter().enumerate() {
        all.push(
            Case::autobahn(
                format!("7.13.{}", i + 1),
                Area::Closing,
                "§7.4.2",
                format!("Close with code {code}, outside every range"),
            )
            .rule("the RFC defines no code above 4999; what a server answers is up to it")
            .script(
                vec![Step::Close(Some(code), Vec::new())],
                Expect::closing(&[1000, code, 1002], false).informational(),
            ),
        );
    }
    // Beyond Autobahn: codes registered with IANA after RFC 6455, and 1015.
    for (i, (code, name)) in [
        (1012u16, "Service Restart"),
        (1013, "Try Again Later"),
        (1014, "Bad Gateway"),
    ]
    .into_iter()
    .enumerate()
    {
        all.push(
            Case::plain(format!("7.14.{}", i + 1), Area::Closing, "§7.4.2, §11.7", format!("Close with code {code} ({name}, registered with IANA after the RFC)"))
                .rule("codes 1000-2999 may be defined later (RFC 6455 §7.4.2); the IANA registry holds 1012-1014 since: echo it, or answer 1000 or 1002")
                .script(vec![Step::Close(Some(code), Vec::new())], Expect::closing(&[1000, code, 1002], true).informational()),
        );
    }
    all.push(
        Case::plain(
            "7.14.4",
            Area::Closing,
            "§7.4.1",
            "Close with code 1015 (TLS handshake failure: never sent on the wire)",
        )
        .rule(INVALID_CODE_RULE)
        .script(
            vec![Step::Close(Some(1015), Vec::new())],
            Expect::closing(&[1002], false),
        ),
    );
    all
}

/// What a bad Close payload must get: 1002, or TCP dropped.
fn close_bad() -> Expect {
    Expect::closing(&[1002], false)
}
