//! The layering of the crate (ARCHITECTURE.md, "Layers"), checked on the source: every module
//! under `src/` may import only the modules its row in [`RULES`] names, so an import that runs
//! back up, or one that would close a cycle, fails here with the file and the path. Imports
//! are read from the code itself (comments and string literals removed): `crate::` paths, the
//! `super::` paths that climb out of a module, and `mcp_authd::` paths in the binary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every module, from the ground up, and the modules it may import besides itself. A module
/// added to `src/` needs a row here before this test passes: choosing its row is choosing its
/// place in the layering.
const RULES: &[(&str, &[&str])] = &[
    // Primitives: libraries of the crate that know nothing of OAuth.
    ("clock", &[]),
    ("secrets", &[]),
    ("signing", &[]),
    ("proxy_trust", &[]),
    ("fetch", &[]),
    ("logging", &[]),
    ("doctor", &[]),
    ("health_check", &[]),
    ("jwt", &["clock", "secrets", "signing"]),
    // The vocabulary: records and the grammars everyone shares.
    ("model", &["secrets"]),
    // Beside each other, above the model only: configuration (with the primitives it builds
    // verifiers and signers from) and the store (with hashing and the clock).
    (
        "config",
        &["model", "jwt", "signing", "proxy_trust", "secrets"],
    ),
    ("store", &["model", "secrets", "clock"]),
    ("metrics", &["model", "store"]),
    // The protocol rules, on everything below them and nothing above.
    (
        "oauth",
        &[
            "model",
            "config",
            "store",
            "metrics",
            "jwt",
            "signing",
            "proxy_trust",
            "secrets",
            "clock",
            "fetch",
        ],
    ),
    // The MCP server's side of the tokens: configuration and verification, no server state.
    (
        "resource",
        &[
            "model",
            "config",
            "jwt",
            "signing",
            "proxy_trust",
            "secrets",
            "clock",
            "fetch",
        ],
    ),
    // The edges: HTTP, the administrative commands, the reload, and the command line.
    ("app", &["oauth"]),
    (
        "http",
        &[
            "app",
            "oauth",
            "model",
            "config",
            "store",
            "metrics",
            "jwt",
            "signing",
            "proxy_trust",
            "secrets",
            "clock",
        ],
    ),
    (
        "admin",
        &["oauth", "model", "config", "store", "secrets", "clock"],
    ),
    ("reload", &["http", "app", "config"]),
    ("cli", ANY),
    ("main", &["cli"]),
];

/// The row of a module that may import every other one.
const ANY: &[&str] = &["*"];

/// Where axum may be used: the HTTP layer, the resource side's middleware, the command line
/// that serves them. Everything below speaks plain types (`http::HeaderMap` at most).
const AXUM_ALLOWED: &[&str] = &["http", "resource", "cli"];

#[test]
fn every_module_imports_only_the_layers_its_rule_allows() {
    let rules = rules();
    let mut problems = Vec::new();
    let files = source_files();
    for module in files
        .iter()
        .filter_map(|f| top_module(f))
        .collect::<BTreeSet<_>>()
    {
        if !rules.contains_key(module.as_str()) {
            problems.push(format!(
                "src/ has a module `{module}` that has no row in RULES (tests/it/layering.rs): give it its place in the layering"
            ));
        }
    }
    let modules: BTreeSet<String> = rules.keys().map(|m| m.to_string()).collect();
    for file in &files {
        let Some(module) = top_module(file) else {
            continue;
        };
        let Some(allowed) = rules.get(module.as_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(src().join(file)).unwrap();
        for (line, target) in imports(file, &strip_comments_and_strings(&text)) {
            let is_module = modules.contains(&target) && target != "main";
            if !is_module || target == module || allowed.contains("*") {
                continue;
            }
            if !allowed.contains(target.as_str()) {
                problems.push(format!(
                    "src/{}:{line} imports crate::{target}, but {module} may import only: {}",
                    file.display(),
                    allowed.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn axum_stays_in_the_http_layer() {
    let mut problems = Vec::new();
    for file in source_files() {
        let Some(module) = top_module(&file) else {
            continue;
        };
        if AXUM_ALLOWED.contains(&module.as_str()) {
            continue;
        }
        let text = strip_comments_and_strings(&std::fs::read_to_string(src().join(&file)).unwrap());
        let tokens = tokenize(&text);
        for (i, token) in tokens.iter().enumerate() {
            if token.text == "axum" && tokens.get(i + 1).is_some_and(|t| t.text == "::") {
                problems.push(format!("src/{}:{} uses axum", file.display(), token.line));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn the_rules_form_no_cycle_and_only_the_binary_imports_the_command_line() {
    let rules = rules();
    for (module, allowed) in &rules {
        assert!(
            *module == "main" || !allowed.contains("cli"),
            "{module} may import cli; only main may"
        );
        for target in allowed {
            assert!(
                *target == "*" || rules.contains_key(target),
                "{module} names {target}, which has no row"
            );
        }
    }
    // Every row may name only rows above it in RULES (the ground comes first), so the rules
    // themselves are a layering: no cycle can be allowed.
    let order: BTreeMap<&str, usize> = RULES
        .iter()
        .enumerate()
        .map(|(i, (m, _))| (*m, i))
        .collect();
    for (module, allowed) in RULES {
        for target in allowed.iter().filter(|t| **t != "*") {
            assert!(
                order[target] < order[module],
                "{module} may import {target}, which stands above it in RULES"
            );
        }
    }
    // What the layering promises in ARCHITECTURE.md, so that loosening a row is noticed here.
    assert!(rules["model"].iter().all(|t| ["secrets"].contains(t)));
    assert!(
        rules["store"]
            .iter()
            .all(|t| ["model", "secrets", "clock"].contains(t))
    );
    for above in [
        "store", "oauth", "http", "app", "admin", "reload", "resource", "metrics",
    ] {
        assert!(
            !rules["config"].contains(above),
            "config may import {above}"
        );
    }
    for above in ["http", "app", "admin", "reload", "resource", "cli"] {
        assert!(!rules["oauth"].contains(above), "oauth may import {above}");
    }
}

/// The checker itself, on a few lines: each kind of path it must see, and what it must not.
#[test]
fn the_import_reader_sees_paths_and_ignores_comments_and_strings() {
    let text = r##"
        //! A comment naming crate::http is no import.
        use crate::{model::Client, store::{self, Store}};
        use super::super::oauth::Server;
        fn f() -> u8 { let _ = "crate::cli"; let _ = r#"crate::admin"#; crate::jwt::x(); b'"' }
        /* crate::reload /* nested */ crate::reload */
        mod tests { use super::*; use super::super::super::config::Config; }
    "##;
    let found: Vec<String> = imports(
        Path::new("store/file.rs"),
        &strip_comments_and_strings(text),
    )
    .into_iter()
    .map(|(_, target)| target)
    .collect();
    assert_eq!(found, ["model", "store", "oauth", "jwt", "config"]);
    let from_main: Vec<String> = imports(Path::new("main.rs"), "mcp_authd::cli::run();")
        .into_iter()
        .map(|(_, target)| target)
        .collect();
    assert_eq!(from_main, ["cli"]);
}

fn rules() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    RULES
        .iter()
        .map(|(module, allowed)| (*module, allowed.iter().copied().collect()))
        .collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, relative to it.
fn source_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path.strip_prefix(src()).unwrap().to_path_buf());
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files.sort();
    files
}

/// The top-level module a file belongs to (`store` for `store/file.rs`), `main` for the
/// binary; `None` for the crate root, which only declares the modules.
fn top_module(file: &Path) -> Option<String> {
    let first = file.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" => None,
        _ => Some(first.trim_end_matches(".rs").to_string()),
    }
}

/// The module path of a file inside the crate: `["store", "file"]` for `store/file.rs`,
/// `["store"]` for `store/mod.rs`.
fn module_path(file: &Path) -> Vec<String> {
    let mut path: Vec<String> = file
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// One token of the stripped source, with its line.
struct Token {
    text: String,
    line: usize,
}

/// Identifiers, `::` and single punctuation characters; whitespace dropped.
fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token {
                text: chars[start..i].iter().collect(),
                line,
            });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            tokens.push(Token {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    tokens
}

/// The top-level modules that the stripped source of `file` reaches, with their lines:
/// `crate::x…`, `super::…::x…` once it climbs to the crate root (inline `mod` blocks count
/// as a level), and `mcp_authd::x…` in the binary. A group (`crate::{a, b::c}`) names each
/// of its members.
fn imports(file: &Path, text: &str) -> Vec<(usize, String)> {
    let tokens = tokenize(text);
    let base = module_path(file);
    let is_binary = file == Path::new("main.rs");
    let mut found = Vec::new();
    // Inline modules open at a brace depth: `(depth inside, name)`.
    let mut inline: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let word = tokens[i].text.as_str();
        let next = |k: usize| tokens.get(i + k).map(|t| t.text.as_str());
        match word {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|(d, _)| *d > depth) {
                    inline.pop();
                }
            }
            "mod" if next(2) == Some("{") => {
                if let Some(name) = next(1) {
                    inline.push((depth + 1, name.to_string()));
                }
            }
            _ => {}
        }
        let preceded_by_path = i > 0 && tokens[i - 1].text == "::";
        let root_path = match word {
            "crate" if next(1) == Some("::") && !preceded_by_path => Some(i + 2),
            "mcp_authd" if is_binary && next(1) == Some("::") && !preceded_by_path => Some(i + 2),
            "super" if next(1) == Some("::") && !preceded_by_path => {
                let mut path: Vec<String> = base.clone();
                path.extend(inline.iter().map(|(_, name)| name.clone()));
                let mut k = i;
                while tokens.get(k).is_some_and(|t| t.text == "super")
                    && tokens.get(k + 1).is_some_and(|t| t.text == "::")
                {
                    path.pop();
                    k += 2;
                }
                // Still inside a top-level module: a sibling, not another layer.
                path.is_empty().then_some(k)
            }
            _ => None,
        };
        if let Some(start) = root_path {
            let line = tokens[i].line;
            for target in first_segments(&tokens, start) {
                found.push((line, target));
            }
        }
        i += 1;
    }
    found
}

/// The first segment of the path at `start`, or of each member of a `{…}` group there.
fn first_segments(tokens: &[Token], start: usize) -> Vec<String> {
    let Some(first) = tokens.get(start) else {
        return Vec::new();
    };
    if first.text != "{" {
        return vec![first.text.clone()];
    }
    let mut segments = Vec::new();
    let mut depth = 0;
    let mut expect_member = true;
    for token in &tokens[start..] {
        match token.text.as_str() {
            "{" => {
                depth += 1;
                if depth > 1 {
                    expect_member = false;
                }
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => expect_member = true,
            name if expect_member && depth == 1 => {
                segments.push(name.to_string());
                expect_member = false;
            }
            _ => {}
        }
    }
    segments
}

/// The source with comments removed and the contents of string and character literals
/// blanked, newlines kept (so lines still count): what is left is code.
fn strip_comments_and_strings(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let keep_newlines = |out: &mut String, part: &[char]| {
        out.extend(part.iter().filter(|c| **c == '\n'));
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let start = i;
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            keep_newlines(&mut out, &chars[start..i.min(chars.len())]);
        } else if c == 'r'
            && (next == Some('#') || next == Some('"'))
            && is_literal_start(&chars, i)
        {
            // A raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let start = j;
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|h| chars.get(j + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            keep_newlines(&mut out, &chars[start..j.min(chars.len())]);
            i = j;
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
            keep_newlines(&mut out, &chars[start..i.min(chars.len())]);
        } else if c == '\'' && is_char_literal(&chars, i) {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether the `r` at `i` starts a raw string rather than ending an identifier (`for"`).
fn is_literal_start(chars: &[char], i: usize) -> bool {
    i == 0
        || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
        || (chars[i - 1] == 'b'
            && (i < 2 || !(chars[i - 2].is_alphanumeric() || chars[i - 2] == '_')))
}

/// Whether the `'` at `i` opens a character literal (`'x'`, `'\n'`) rather than a lifetime.
fn is_char_literal(chars: &[char], i: usize) -> bool {
    match chars.get(i + 1) {
        Some('\\') => true,
        Some(_) => chars.get(i + 2) == Some(&'\''),
        None => false,
    }
}
