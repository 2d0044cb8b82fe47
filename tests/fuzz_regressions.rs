//! Every input in the fuzzers' committed corpora (`fuzz/corpus/`) and every crash
//! they ever found (`fuzz/regressions/`) goes through its target again on every test
//! run, so a fixed crash stays fixed without needing the fuzzer.

use std::path::Path;
use std::time::Instant;

fn run_all(target: &str, f: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let started = Instant::now();
    let mut count = 0;
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap();
            f(&data);
            count += 1;
        }
    }
    assert!(count > 0, "no inputs for {target}");
    eprintln!("{target}: {count} inputs in {:?}", started.elapsed());
}

#[test]
fn http_head_corpus_runs_clean() {
    run_all("http_head", switchboard::fuzzing::http_head);
}

#[test]
fn chat_decode_corpus_runs_clean() {
    run_all("chat_decode", switchboard::fuzzing::chat_decode);
}

#[test]
fn connection_corpus_runs_clean() {
    run_all("connection", switchboard::fuzzing::connection);
}
