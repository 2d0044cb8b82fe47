//! `certs/generate.sh`: a new development set goes where the user says (or into a new
//! directory), never over the committed `certs/*.pem` the binary builds in unless
//! `--replace-dev` asks for it, and the set it makes serves `wss://`.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tungstenite::Message;

/// The files a set is made of.
const SET: [&str; 3] = ["ca.pem", "localhost.pem", "localhost-key.pem"];

/// `openssl`, or `None` after saying the test was skipped.
fn openssl(test: &str) -> Option<PathBuf> {
    tool_or_skip(test, "openssl", "SWITCHBOARD_REQUIRE_TOOLS")
}

/// Runs the script at `script` with `args`, from the temp dir `cwd`.
fn run(script: &Path, cwd: &Path, args: &[&str]) -> Output {
    let mut child = Command::new("bash")
        .arg(script)
        .args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash runs generate.sh");
    // openssl makes two EC keys and signs once: well under a minute, even on a busy
    // machine; a hung script fails the test instead of hanging it.
    let status = wait_exit(&mut child, std::time::Duration::from_secs(60));
    if status.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("generate.sh's output");
    assert!(status.is_some(), "generate.sh did not finish in 60 s");
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The committed set's bytes, to compare after a run.
fn committed() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = SET.iter().map(|f| certs().join(f)).collect();
    files.push(certs().join("generate.sh"));
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a committed file in certs/");
            (path, bytes)
        })
        .collect()
}

fn assert_committed_untouched(before: &[(PathBuf, Vec<u8>)]) {
    for (path, bytes) in before {
        let now = std::fs::read(path).expect("the committed file is still there");
        assert!(
            &now == bytes,
            "{} was changed (git checkout -- certs/ restores it)",
            path.display()
        );
    }
    assert!(
        !certs().join("generated").exists() || committed_generated_is_ignored(),
        "certs/generated/ appeared without being asked for"
    );
}

/// A `certs/generated/` left by a developer's own run is fine, as long as git ignores it.
fn committed_generated_is_ignored() -> bool {
    certs().join("generated/.gitignore").is_file()
}

/// Serves `wss://` with `cert` and `key`, and answers whether a client trusting only
/// `ca` gets through the handshake and an echo.
fn served_and_trusted(cert: &Path, key: &Path, ca: &Path) -> bool {
    let server = start_with(|b| b.tls_listen("127.0.0.1:0").tls_identity(cert, key));
    let addr = server.tls_local_addr().expect("a TLS listener");
    let Ok(stream) = tls_trusting(addr, ca) else {
        return false;
    };
    let url = format!("wss://localhost:{}/ws/echo", addr.port());
    let (mut ws, _) = tungstenite::client(url, stream).expect("WebSocket handshake over TLS");
    ws.send(Message::text("new set")).expect("send");
    assert_eq!(next(&mut ws), Message::text("new set"));
    true
}

#[test]
fn a_new_set_goes_into_the_named_directory_and_the_committed_one_stays() {
    let test = "a_new_set_goes_into_the_named_directory_and_the_committed_one_stays";
    let Some(_) = openssl(test) else { return };
    let before = committed();
    let tmp = TempDir::new("certs");
    let out = tmp.path().join("lan").join("set"); // does not exist yet: created
    let out_arg = out.to_str().expect("a UTF-8 temp path");

    let output = run(
        &certs().join("generate.sh"),
        tmp.path(),
        &["--out", out_arg, "192.168.1.20", "box.local"],
    );
    assert!(output.status.success(), "generate.sh: {}", stderr(&output));
    assert_committed_untouched(&before);
    for file in SET {
        assert!(out.join(file).is_file(), "{file} written to --out");
    }
    assert!(
        !out.join("ca-key.pem").exists(),
        "the CA's private key is deleted"
    );

    // The new set works, and it is new: the committed CA does not vouch for it, and the
    // committed certificate is still what the server presents by default.
    let (cert, key) = (out.join("localhost.pem"), out.join("localhost-key.pem"));
    assert!(served_and_trusted(&cert, &key, &out.join("ca.pem")));
    assert!(!served_and_trusted(&cert, &key, &certs().join("ca.pem")));
    let server = start_with(|b| b.tls_listen("127.0.0.1:0"));
    let addr = server.tls_local_addr().expect("a TLS listener");
    assert!(
        tls_trusting(addr, &certs().join("ca.pem")).is_ok(),
        "the built-in development certificate is the committed one"
    );
}

#[test]
fn a_set_already_there_is_not_overwritten() {
    let test = "a_set_already_there_is_not_overwritten";
    let Some(_) = openssl(test) else { return };
    let tmp = TempDir::new("certs");
    let out = tmp.path().join("set");
    let out_arg = out.to_str().expect("a UTF-8 temp path");
    let script = certs().join("generate.sh");

    let first = run(&script, tmp.path(), &["--out", out_arg]);
    assert!(first.status.success(), "generate.sh: {}", stderr(&first));
    let made: Vec<Vec<u8>> = SET
        .iter()
        .map(|f| std::fs::read(out.join(f)).expect("written"))
        .collect();

    let again = run(&script, tmp.path(), &["--out", out_arg, "box.local"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains(&format!(
            "{}/ca.pem exists; remove it or pass --out with another directory",
            out.canonicalize().expect("out").display()
        )),
        "{}",
        stderr(&again)
    );
    for (file, bytes) in SET.iter().zip(&made) {
        assert_eq!(
            &std::fs::read(out.join(file)).expect("still there"),
            bytes,
            "{file} kept"
        );
    }
}

#[test]
fn the_committed_directory_needs_replace_dev_and_bad_arguments_are_refused() {
    let test = "the_committed_directory_needs_replace_dev_and_bad_arguments_are_refused";
    let Some(_) = openssl(test) else { return };
    let before = committed();
    let tmp = TempDir::new("certs");
    let script = certs().join("generate.sh");
    let certs_arg = certs();
    let certs_arg = certs_arg.to_str().expect("a UTF-8 path");

    let cases: [(&[&str], &str); 5] = [
        (
            &["--out", certs_arg],
            "holds the committed development set; pass --replace-dev to overwrite it",
        ),
        // A comma would start another name in OpenSSL's configuration.
        (
            &["--out", "x", "box.local,DNS:bank.example"],
            "not a host name or IP address: 'box.local,DNS:bank.example'",
        ),
        (&["--out"], "--out needs a directory"),
        (
            &["--replace-dev", "--out", "x"],
            "--out and --replace-dev exclude each other",
        ),
        (&["--force"], "unknown option --force (see --help)"),
    ];
    for (args, message) in cases {
        let output = run(&script, tmp.path(), args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert_committed_untouched(&before);
}

#[test]
fn by_default_a_new_ignored_directory_and_replace_dev_overwrites_only_when_asked() {
    // A copy of the script in a temp dir stands for certs/: its default and
    // --replace-dev write beside it, and the repository's certs/ is not touched.
    let test = "by_default_a_new_ignored_directory_and_replace_dev_overwrites_only_when_asked";
    let Some(_) = openssl(test) else { return };
    let before = committed();
    let tmp = TempDir::new("certs");
    let dir = tmp.path().join("certs");
    std::fs::create_dir(&dir).expect("a stand-in certs/");
    let script = dir.join("generate.sh");
    std::fs::copy(certs().join("generate.sh"), &script).expect("script copied");
    for file in SET {
        std::fs::write(dir.join(file), "committed\n").expect("stand-in file");
    }

    let output = run(&script, tmp.path(), &[]);
    assert!(output.status.success(), "generate.sh: {}", stderr(&output));
    for file in SET {
        assert_eq!(
            std::fs::read_to_string(dir.join(file)).expect("kept"),
            "committed\n"
        );
        assert!(dir.join("generated").join(file).is_file(), "{file} made");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("generated/.gitignore")).expect("a .gitignore"),
        "*\n",
        "git ignores the generated set (its private key among it)"
    );

    let output = run(&script, tmp.path(), &["--replace-dev", "box.local"]);
    assert!(output.status.success(), "generate.sh: {}", stderr(&output));
    for file in SET {
        let now = std::fs::read_to_string(dir.join(file)).expect("replaced");
        assert!(now.starts_with("-----BEGIN "), "{file} replaced: {now}");
    }
    assert_committed_untouched(&before);
}
