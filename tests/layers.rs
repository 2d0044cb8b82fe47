//! The library's rooms point one way: each stage of the data path imports only the
//! stages below it, so no two modules can import each other in a circle. This reads
//! every `crate::…` path in `src/` (the binary in `src/bin/` is not the library) and
//! checks it against the order below, so a change that breaks the layering fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The library's top-level modules, from the top of the data path to the bottom. A
/// module may use the modules after it in this list, never one before it; modules on
/// one line are peers that use none of each other. A folder is one room, named by
/// its first path component: `listener/{mod,admission,pool,dispatch}.rs` are all
/// `listener`, and may use each other.
///
/// One call runs up the stack, and this check cannot see it because it is a value,
/// not an import: `http::Seat`, the boxed closure the accept loop hands a connection
/// from a trusted proxy, which the HTTP front calls once the request head has named
/// the client. It is allowed because the question ("may this client have one more
/// connection?") can only be asked once the head is read, and only the accept loop
/// may answer it: it alone owns the counts, without a lock. The closure sends on the
/// same channel the connection's end is reported on, so the loop always sees the
/// seat taken before it is freed; a value handed back down instead would have to
/// split the HTTP front in two around the answer.
///
/// Answers come back up on channels too: whoever asks the hub, the doors or the
/// backend hands down a `reply` sender (or, for the hub, a channel of events the
/// backend answers on) and waits for it. That is allowed everywhere: nothing below
/// ever starts a conversation with a stage above it, it only answers one.
const LAYERS: &[&[&str]] = &[
    &["server", "fuzzing", "doc_tables"],
    &["listener"],
    &["tls"],
    &["http"],
    &["connection"],
    &["hub"],
    &["cluster", "doors"],
    &["store", "wire"],
    &["outbox"],
    &["base"],
    &["config"],
    &["chat", "cidr", "error", "metrics", "trace"],
    &["escape", "files", "frame", "head"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file names with `crate::…` (in `use` or in a path), with
/// comments left out.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .collect(),
                None => vec![rest],
            };
            for name in names {
                let module: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !module.is_empty() {
                    found.insert(module);
                }
            }
        }
    }
    found
}

#[test]
fn every_module_imports_only_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|c| c.trim_end_matches(".rs").to_owned())
            .expect("a module name");
        if module == "lib" {
            continue; // declares the modules and re-exports the API
        }
        let Some(own) = layer_of(&module) else {
            panic!(
                "{}: module {module} is in no layer of LAYERS",
                relative.display()
            );
        };
        let code = std::fs::read_to_string(file).expect("readable source");
        for used in imports(&code) {
            // Items the crate root re-exports from a leaf are named by their leaf.
            let target = match used.as_str() {
                "Error" | "Result" => "error".to_owned(),
                "Config" | "Identity" => "config".to_owned(),
                other => other.to_owned(),
            };
            if target == module {
                continue;
            }
            match layer_of(&target) {
                Some(layer) if layer > own => {}
                Some(_) => wrong.push(format!(
                    "{} ({module}) uses crate::{used}, which is not below it",
                    relative.display()
                )),
                None => wrong.push(format!(
                    "{} uses crate::{used}, which is in no layer",
                    relative.display()
                )),
            }
        }
        checked += 1;
    }
    assert!(
        checked > 20,
        "only {checked} files read: is src/ where it was?"
    );
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

/// Within a folder, its files from the top down, as [`LAYERS`] orders the folders: a
/// file may use the files on the lines after its own (`super::storage::range`, `use
/// super::{presence, Bridge}`), never one before it or beside it. Anything may use
/// `mod.rs`, which holds what the folder's files share (the types, the constants).
const WITHIN: &[(&str, &[&[&str]])] = &[
    (
        "hub",
        &[
            &["changes"],
            &["chat"],
            &["backend", "relay", "moderation"],
            &["post", "idempotent"],
            &["members"],
        ],
    ),
    (
        "cluster",
        &[
            &["run"],
            &["presence"],
            &["storage", "listen", "scripts"],
            &["files"],
        ],
    ),
    ("store", &[&["sqlite"], &["presence"]]),
    ("doors", &[&["signin"]]),
    ("listener", &[&["pool"], &["admission", "dispatch"]]),
    (
        "http",
        &[
            &["route"],
            &["api", "login", "qr", "files"],
            &["auth", "forwarded", "host", "multipart"],
            &["body"],
            &["request", "response"],
        ],
    ),
    (
        "base",
        &[
            &["context"],
            &["client", "random", "rate", "transport", "wake"],
        ],
    ),
];

/// Types whose methods are written in two files of one folder: (folder, upper,
/// lower). `hub/chat.rs` defines `ChatRooms` with what members and the API ask;
/// `hub/changes.rs` adds what the backend changed, and may call the requests' methods
/// (a member's first requests wait for its name, and run once the change gives it
/// one). A method call names no file, so the import check cannot see which way these
/// point: the lower file must call none of the upper file's methods.
const ONE_TYPE_TWO_FILES: &[(&str, &str, &str)] = &[("hub", "changes", "chat")];

/// The names of the methods and functions `code` defines.
fn defined(code: &str) -> BTreeSet<String> {
    code.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("pub(super) ").unwrap_or(line);
            let name = line.strip_prefix("fn ")?;
            Some(
                name.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn one_type_in_two_files_points_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (folder, upper, lower) in ONE_TYPE_TWO_FILES {
        let read = |file: &str| {
            std::fs::read_to_string(src.join(folder).join(format!("{file}.rs"))).expect("readable")
        };
        let (upper_code, lower_code) = (read(upper), read(lower));
        let calls: Vec<String> = defined(&upper_code)
            .into_iter()
            .filter(|name| lower_code.contains(&format!("self.{name}(")))
            .collect();
        assert!(
            calls.is_empty(),
            "src/{folder}/{lower}.rs calls {calls:?} of {upper}.rs, which is above it"
        );
    }
}

/// The sibling files a file names through `super::`, with comments left out.
fn siblings(code: &str, files: &[&str]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(at) = rest.find("super::") {
            rest = &rest[at + "super::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if files.contains(&name.as_str()) {
                    found.insert(name);
                }
            }
        }
    }
    found
}

#[test]
fn files_within_a_folder_point_one_way_too() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (folder, layers) in WITHIN {
        let dir = src.join(folder);
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("the folder is there")
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".rs")
                    .map(str::to_owned)
            })
            .filter(|name| name != "mod")
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = layers
            .iter()
            .flat_map(|l| l.iter().map(|f| (*f).to_owned()))
            .collect();
        listed.sort();
        assert_eq!(on_disk, listed, "src/{folder}/: every file in WITHIN, once");
        let files: Vec<&str> = layers.iter().flat_map(|l| l.iter().copied()).collect();
        let line_of = |f: &str| layers.iter().position(|l| l.contains(&f));
        for file in &files {
            let code = std::fs::read_to_string(dir.join(format!("{file}.rs"))).expect("readable");
            for used in siblings(&code, &files) {
                if used == *file {
                    continue;
                }
                if line_of(&used) <= line_of(file) {
                    wrong.push(format!("src/{folder}/{file}.rs uses {used}, not below it"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_folder_checker_sees_sibling_files_in_groups_and_paths() {
    let code = "use super::storage::{loaded, range};\nuse super::{BUS, Bridge, listen};\n\
                let x = super::run::go(); // super::scripts is only mentioned\n";
    let found: Vec<String> = siblings(code, &["listen", "run", "scripts", "storage"])
        .into_iter()
        .collect();
    assert_eq!(found, ["listen", "run", "storage"]);
}

#[test]
fn the_checker_sees_grouped_and_inline_paths_and_skips_comments() {
    let code = "use crate::base::{Context, Wake};\nuse crate::{hub, outbox::Inbox};\n\
                let x = crate::metrics::bump(&m); // crate::server is only mentioned\n";
    let found: Vec<String> = imports(code).into_iter().collect();
    assert_eq!(found, ["base", "hub", "metrics", "outbox"]);
}
