//! The code's layering, checked: within each crate no two files import each
//! other, directly or round a longer loop. (Between crates Cargo already
//! refuses a loop: `operators` → `pipelines` → `models` → `engine` → the
//! binary.) A file's imports are the `crate::…` and `super::…` paths it
//! names outside its test module, each resolved to the file of the longest
//! module prefix that exists; a module's own children (`mod x; pub use
//! x::Y`) are its parts, not imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates' source folders, from the workspace root.
const CRATES: [&str; 5] = ["operators/src", "pipelines/src", "models/src", "engine/src", "src"];

/// Every `.rs` file under `dir`, by module path (`a::b` for `a/b.rs` or
/// `a/b/mod.rs`; the crate root is the empty path). The binary's `main.rs`
/// is a crate of its own and left out.
fn modules(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<String>, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            modules(root, &path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") || (dir == root && path.ends_with("main.rs")) {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap().with_extension("");
        let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
            parts.pop();
        }
        out.insert(parts, path);
    }
}

/// The source a file compiles outside its tests, without comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The paths a file names: `use` trees expanded (`a::{b, c::d}` → `a::b`,
/// `a::c::d`) and inline paths, each as its segments.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        let statement =
            statement.strip_prefix("pub(crate) ").or_else(|| statement.strip_prefix("pub ")).unwrap_or(statement);
        if let Some(tree) = statement.strip_prefix("use ") {
            expand("", tree.trim(), &mut found);
        }
    }
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let word = |at: usize, w: &str| code.get(at..).is_some_and(|s| s.starts_with(w));
        let boundary = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == ':');
        if boundary && (word(i, "crate::") || word(i, "super::")) {
            let end = (i..chars.len())
                .find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == ':'))
                .unwrap_or(chars.len());
            let path: String = chars[i..end].iter().collect();
            found.push(path.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect());
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

/// Expands one `use` tree under `prefix`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.split(" as ").next().unwrap_or(tree).trim();
    let Some(open) = tree.find('{') else {
        let full = format!("{prefix}{tree}");
        out.push(full.split("::").filter(|s| !s.is_empty()).map(|s| s.trim().to_string()).collect());
        return;
    };
    let head = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&format!("{prefix}{head}"), &inner[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !inner[start..].trim().is_empty() {
        expand(&format!("{prefix}{head}"), &inner[start..], out);
    }
}

/// The file a path from module `from` names: its longest module prefix.
fn resolve(modules: &BTreeMap<Vec<String>, PathBuf>, from: &[String], path: &[String]) -> Option<PathBuf> {
    let mut full: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") => from[..from.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    let mut rest = &path[1..];
    while rest.first().is_some_and(|s| s == "super") {
        full.pop();
        rest = &rest[1..];
    }
    full.extend(rest.iter().cloned());
    (0..=full.len()).rev().find_map(|n| modules.get(&full[..n]).cloned())
}

/// A loop in `edges`, as the files round it, if there is one.
fn find_loop(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Option<Vec<PathBuf>> {
    fn visit(
        file: &PathBuf,
        edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        path: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        if let Some(at) = path.iter().position(|p| p == file) {
            return Some(path[at..].to_vec());
        }
        if !done.insert(file.clone()) {
            return None;
        }
        path.push(file.clone());
        for next in edges.get(file).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|file| visit(file, edges, &mut Vec::new(), &mut done))
}

/// The imports between the files of the crate whose source is `src`.
fn imports(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut files = BTreeMap::new();
    modules(src, src, &mut files);
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (module, file) in &files {
        let targets = paths(&code(file)).into_iter().filter_map(|p| resolve(&files, module, &p));
        edges.entry(file.clone()).or_default().extend(targets.filter(|t| t != file));
    }
    edges
}

#[test]
fn no_two_files_of_a_crate_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for src in CRATES {
        let edges = imports(&root.join(src));
        assert!(edges.len() > 5, "{src}: the crate's files were found ({})", edges.len());
        if let Some(files) = find_loop(&edges) {
            let names: Vec<String> =
                files.iter().map(|f| f.strip_prefix(root).unwrap().display().to_string()).collect();
            panic!("an import loop in {src}: {}", names.join(" → "));
        }
    }
}

/// The check finds a loop where there is one, `super::` and `use` trees
/// included, and none where the imports run one way.
#[test]
fn a_loop_is_found_and_a_one_way_layering_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("stages")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod stages;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::stages::{b::B, Other};\n").unwrap();
    std::fs::write(src.join("stages/mod.rs"), "mod b;\npub struct Other;\n").unwrap();
    std::fs::write(src.join("stages/b.rs"), "pub struct B;\n// use crate::a;\n").unwrap();
    assert_eq!(find_loop(&imports(src)), None, "a → stages/b and a → stages: one way");
    std::fs::write(src.join("stages/b.rs"), "pub struct B;\nfn f() { super::super::a::g() }\n").unwrap();
    let found = find_loop(&imports(src)).expect("a → stages/b → a");
    let mut names: Vec<String> = found.iter().map(|f| f.strip_prefix(src).unwrap().display().to_string()).collect();
    names.sort();
    assert_eq!(names, ["a.rs", "stages/b.rs"]);
}
