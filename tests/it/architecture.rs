//! The layering of `src/`, checked from the real imports: every `crate::…` path goes down the
//! layer order of ARCHITECTURE.md, no folder's files import each other in a cycle, the pure layers know no runtime, only the
//! server's layers know Pingora, and ARCHITECTURE.md names every file there is.

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

/// The layers, from the top (ARCHITECTURE.md, "Layers"): a folder may use only folders of later
/// entries.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["server", "offload"],
    &["front"],
    &["upstream"],
    &["wire", "telemetry"],
    &["config"],
    &["core"],
    &["s3", "fs"],
    &["http"],
];

fn layer_of(folder: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&folder))
}

/// The code of a file without its test module and comments, by line number.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .enumerate()
        .map(|(n, line)| (n + 1, line.split("//").next().unwrap_or_default()))
}

/// `(folder, file, line, target folder)` for every `crate::<folder>` path in `files`, each
/// given as (path below `src/`, text).
fn crate_paths(files: &[(String, String)]) -> Vec<(String, String, usize, String)> {
    let folders: std::collections::BTreeSet<&str> = files
        .iter()
        .filter_map(|(path, _)| Some(path.split_once('/')?.0))
        .collect();
    let mut found = Vec::new();
    for (path, text) in files {
        let Some((folder, _)) = path.split_once('/') else {
            continue; // main.rs and lib.rs declare the folders
        };
        for (line, code) in code_lines(text) {
            for (at, _) in code.match_indices("crate::") {
                let target: String = code[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // Items of lib.rs itself (`crate::GIT_HASH`, `crate::error_chain`) belong to
                // no layer: every layer may use them.
                let item = !folders.contains(target.as_str());
                if !target.is_empty() && target != folder && !item {
                    found.push((folder.to_owned(), path.clone(), line, target));
                }
            }
        }
    }
    found
}

/// Every import that goes up the order or sideways, or from or to a folder not in it.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (folder, path, line, target) in crate_paths(files) {
        match (layer_of(&folder), layer_of(&target)) {
            (Some(from), Some(to)) if from < to => {}
            (Some(_), Some(_)) => wrong.push(format!(
                "src/{path}:{line}: {folder}/ uses {target}/, which is not below it"
            )),
            _ => wrong.push(format!(
                "src/{path}:{line}: {folder}/ -> {target}/: add the folder to LAYERS and ARCHITECTURE.md"
            )),
        }
    }
    wrong
}

fn sources() -> Vec<(String, String)> {
    rust_files(&src())
        .into_iter()
        .map(|file| {
            let path = file.strip_prefix(src()).unwrap().display().to_string();
            (path, std::fs::read_to_string(&file).unwrap())
        })
        .collect()
}

#[test]
fn every_import_goes_down_the_layers() {
    let wrong = violations(&sources());
    assert!(
        wrong.is_empty(),
        "imports against the layer order:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_layer_check_finds_an_upward_import_and_a_sideways_one() {
    let mut files = sources();
    files.push((
        "core/injected.rs".to_owned(),
        "use crate::config::Config;\n// crate::server in a comment is no import\n".to_owned(),
    ));
    files.push((
        "s3/injected.rs".to_owned(),
        "fn f() { crate::fs::read::read_at(); }\n#[cfg(test)]\nmod tests { use crate::cli; }\n"
            .to_owned(),
    ));
    assert_eq!(
        violations(&files),
        [
            "src/core/injected.rs:1: core/ uses config/, which is not below it",
            "src/s3/injected.rs:1: s3/ uses fs/, which is not below it",
        ]
    );
}

/// File → files it imports, within `folder`.
fn file_graph(folder: &str) -> Vec<(String, Vec<String>)> {
    let mut graph = Vec::new();
    for file in rust_files(&src().join(folder)) {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let mut uses = Vec::new();
        for (_, code) in code_lines(&text) {
            for prefix in ["super::".to_owned(), format!("crate::{folder}::")] {
                for (at, _) in code.match_indices(prefix.as_str()) {
                    let target: String = code[at + prefix.len()..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !target.is_empty() && target != name && !uses.contains(&target) {
                        uses.push(target);
                    }
                }
            }
        }
        graph.push((name, uses));
    }
    graph
}

/// A cycle in `graph`, as the files around it, if there is one.
fn cycle(graph: &[(String, Vec<String>)]) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &[(String, Vec<String>)],
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.iter().any(|n| n == node) {
            return None;
        }
        path.push(node.to_owned());
        let next = graph
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, u)| u.clone());
        for target in next.unwrap_or_default() {
            if let Some(found) = visit(&target, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.push(node.to_owned());
        None
    }
    let mut done = Vec::new();
    graph
        .iter()
        .find_map(|(node, _)| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_files_of_each_folder_import_each_other_in_one_direction() {
    for folder in std::fs::read_dir(src()).unwrap().flatten() {
        if !folder.path().is_dir() {
            continue;
        }
        let name = folder.file_name().to_string_lossy().into_owned();
        let graph = file_graph(&name);
        assert_eq!(cycle(&graph), None, "{name}: {graph:?}");
    }
    // The check itself: a pair that imports each other is a cycle.
    let pair = vec![
        ("a".to_owned(), vec!["b".to_owned()]),
        ("b".to_owned(), vec!["a".to_owned()]),
    ];
    assert_eq!(cycle(&pair), Some(vec!["a".to_owned(), "b".to_owned()]));
}

#[test]
fn the_pure_core_imports_neither_tokio_nor_pingora() {
    for folder in ["core", "http", "s3"] {
        let found = uses_of(folder, &["tokio", "pingora"]);
        assert!(
            found.is_empty(),
            "{folder}/ must stay pure:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn only_the_server_layers_know_pingora() {
    for folder in ["core", "http", "s3", "fs", "config", "telemetry", "offload"] {
        let found = uses_of(folder, &["pingora"]);
        assert!(
            found.is_empty(),
            "{folder}/ uses Pingora:\n{}",
            found.join("\n")
        );
    }
}

/// ARCHITECTURE.md's "Where things live" names every source folder and file, so a newcomer's
/// map is the real tree.
#[test]
fn the_architecture_map_names_every_source_file() {
    let map =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap();
    let layout = map
        .split("## Where things live")
        .nth(1)
        .expect("ARCHITECTURE.md has a \"Where things live\" section");
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
        "ARCHITECTURE.md does not mention: {missing:?}"
    );
}
