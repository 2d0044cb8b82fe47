//! The repository explains itself: no source file, test, doc or config cites a document
//! the reader does not have (a product specification kept elsewhere, a sibling folder),
//! so a reader never meets a reference they cannot follow.

use std::path::{Path, PathBuf};

/// Files a reader of the repository meets: its docs, code, tests and configuration.
fn readable_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name != ".ci" || name == "target" {
            continue;
        }
        if path.is_dir() {
            readable_files(&path, out);
        } else if ["rs", "md", "toml", "html", "sh", "conf", "service", "lua"]
            .iter()
            .any(|ext| path.extension().is_some_and(|e| e == *ext))
            || name == "run"
        {
            out.push(path);
        }
    }
}

#[test]
fn nothing_cites_a_document_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    readable_files(root, &mut files);
    assert!(
        files.len() > 50,
        "found the repository's files: {}",
        files.len()
    );
    // Spelled in two pieces so that this file does not match itself.
    let needles = [
        concat!("SPEC", " §"),
        concat!("SPEC", ".md"),
        concat!("../", "shared/"),
    ];
    let mut found = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            if needles.iter().any(|n| line.contains(n)) {
                let shown = file.strip_prefix(root).unwrap_or(file).display();
                found.push(format!("{shown}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references to files a reader does not have:\n{}",
        found.join("\n")
    );
}
