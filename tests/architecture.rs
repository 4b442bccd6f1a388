//! The layering of `src/`, checked: the pure core knows no runtime, nothing below the server
//! knows Pingora, and the README's Layout section names every file there is.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Lines of code (comments aside) in `folder` that name one of `crates`.
fn uses_of(folder: &str, crates: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in rust_files(&src().join(folder)) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for name in crates {
                let named = code
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(|word| word == *name);
                if named {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn the_pure_core_imports_neither_tokio_nor_pingora() {
    for folder in ["core", "http"] {
        let found = uses_of(folder, &["tokio", "pingora"]);
        assert!(
            found.is_empty(),
            "{folder}/ must stay pure:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn only_the_server_knows_pingora() {
    for folder in ["core", "http", "s3", "fs", "config", "telemetry"] {
        let found = uses_of(folder, &["pingora"]);
        assert!(
            found.is_empty(),
            "{folder}/ uses Pingora:\n{}",
            found.join("\n")
        );
    }
}

/// The "Layout" section of the README names every source folder and file, so a newcomer's
/// map is the real tree.
#[test]
fn the_readme_layout_names_every_source_file() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let layout = readme
        .split("## Layout")
        .nth(1)
        .expect("README has a Layout section");
    let layout = layout.split("\n## ").next().unwrap_or(layout);
    let mut missing = Vec::new();
    for file in rust_files(&src()) {
        let relative = file.strip_prefix(src()).unwrap();
        let name = relative.file_name().unwrap().to_string_lossy().into_owned();
        if name != "mod.rs" && !layout.contains(&name) {
            missing.push(relative.display().to_string());
        }
        if let Some(folder) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !layout.contains(&format!("{}/", folder.display())) {
                missing.push(format!("{}/", folder.display()));
            }
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "README Layout does not mention: {missing:?}"
    );
}
