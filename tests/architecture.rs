//! The layering rules of galley, checked on the source text of `src/`: the
//! engine names nothing of the shop, modules import each other without
//! cycles, nothing imports the composition root back, and files and
//! functions stay small enough to read.
//!
//! The checks read code, not comments or string literals: a small lexer
//! blanks those out first. Paths are found wherever they appear (`use`
//! lines, types, expressions, macros), including `use` groups such as
//! `crate::{domain, store::x}`, and `super::` chains are resolved against
//! the module the path sits in, so an escape such as `super::super::domain`
//! is caught as well.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest production file in `src/`, in lines; test files (`tests.rs`,
/// `*_tests.rs`) are exempt.
const MAX_FILE_LINES: usize = 600;
/// Longest function in `src/`, from its `fn` line to its closing brace;
/// functions in `#[cfg(test)]` modules and `tests.rs` files are exempt.
const MAX_FN_LINES: usize = 80;
/// Top-level modules of the engine: generic over the domain it runs.
const ENGINE_MODULES: &[&str] = &[
    "codec",
    "store",
    "pipeline",
    "api",
    "telemetry",
    "config",
    "kafka",
];
/// Modules of the shop that the engine must never name.
const SHOP_MODULES: &[&str] = &["domain", "shop"];
/// Where everything is wired together: may import anything, imported by nothing.
/// `lib` and `main` stand for src/lib.rs and src/main.rs.
const COMPOSITION_ROOT: &[&str] = &["cli", "startup", "main", "lib"];
/// First segments of the paths the checks follow: the crate itself (as
/// `crate`, `$crate` or, from the binary and tests, `galley`) and relative
/// module paths.
const PATH_ROOTS: &[&str] = &["crate", "super", "self", "galley"];

/// One `.rs` file under `src/`.
struct SourceFile {
    /// Shown in failures, for example `src/api/views.rs`.
    shown: String,
    /// Its module path: `src/api/views.rs` is `[api, views]`,
    /// `src/api/mod.rs` is `[api]`, `src/lib.rs` is `[lib]`.
    module: Vec<String>,
    /// The text with comments and literals blanked; same length and lines.
    code: Vec<u8>,
    line_count: usize,
    is_tests_file: bool,
}

/// A crate path found in the code, resolved to an absolute module path.
struct PathUse {
    line: usize,
    target: Vec<String>,
}

/// A `mod name { ... }` written inline in a file.
struct InlineModule {
    name: String,
    body: std::ops::Range<usize>,
    is_test: bool,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn blank(code: &mut [u8], range: std::ops::Range<usize>) {
    for byte in &mut code[range] {
        if *byte != b'\n' {
            *byte = b' ';
        }
    }
}

/// The source with comments (doc comments included) and the contents of
/// string and char literals replaced by spaces, keeping every newline, so
/// that offsets and line numbers still match the file.
fn strip_comments_and_literals(source: &str) -> Vec<u8> {
    let bytes = source.as_bytes();
    let mut code = bytes.to_vec();
    let mut i = 0;
    while i < bytes.len() {
        let next = bytes.get(i + 1).copied();
        let end = match bytes[i] {
            b'/' if next == Some(b'/') => line_end(bytes, i),
            b'/' if next == Some(b'*') => block_comment_end(bytes, i),
            b'"' => {
                let end = string_end(bytes, i + 1);
                blank(&mut code, i + 1..end.saturating_sub(1).max(i + 1));
                i = end;
                continue;
            }
            b'r' if raw_string_prefix(bytes, i) => {
                let (content, end) = raw_string_span(bytes, i + 1);
                blank(&mut code, content);
                i = end;
                continue;
            }
            b'\'' => match char_literal_end(bytes, i) {
                Some(end) => {
                    blank(&mut code, i + 1..end - 1);
                    i = end;
                    continue;
                }
                None => {
                    // A lifetime or a loop label: code, left as it is.
                    i += 1;
                    continue;
                }
            },
            _ => {
                i += 1;
                continue;
            }
        };
        blank(&mut code, i..end);
        i = end;
    }
    code
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| from + p)
}

/// Block comments nest in Rust.
fn block_comment_end(bytes: &[u8], from: usize) -> usize {
    let mut depth = 0usize;
    let mut i = from;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The offset just past the closing quote of a string whose content starts at `from`.
fn string_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Whether the `r` at `at` starts a raw string: it is the whole token `r`,
/// `br` or `cr`, followed by `#`s and a quote.
fn raw_string_prefix(bytes: &[u8], at: usize) -> bool {
    let token_start = (0..at)
        .rev()
        .take_while(|&k| is_ident_byte(bytes[k]))
        .last()
        .unwrap_or(at);
    let prefix_ok = matches!(&bytes[token_start..at], b"" | b"b" | b"c");
    let after_hashes = bytes[at + 1..]
        .iter()
        .position(|&b| b != b'#')
        .map(|p| at + 1 + p);
    prefix_ok && after_hashes.is_some_and(|q| bytes[q] == b'"')
}

/// The content range and end of a raw string whose `#`s start at `from`.
fn raw_string_span(bytes: &[u8], from: usize) -> (std::ops::Range<usize>, usize) {
    let hashes = bytes[from..].iter().take_while(|&&b| b == b'#').count();
    let content_start = from + hashes + 1;
    let mut closing = Vec::with_capacity(hashes + 1);
    closing.push(b'"');
    closing.extend(std::iter::repeat_n(b'#', hashes));
    let content_end = bytes[content_start..]
        .windows(closing.len())
        .position(|w| w == closing.as_slice())
        .map_or(bytes.len(), |p| content_start + p);
    (
        content_start..content_end,
        (content_end + closing.len()).min(bytes.len()),
    )
}

/// The end of the char literal opening at `at`, or `None` for a lifetime or label.
fn char_literal_end(bytes: &[u8], at: usize) -> Option<usize> {
    let first = *bytes.get(at + 1)?;
    if first == b'\\' {
        let close = bytes.get(at + 3..)?.iter().position(|&b| b == b'\'')?;
        return Some(at + 3 + close + 1);
    }
    let width = match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    (bytes.get(at + 1 + width) == Some(&b'\'')).then_some(at + 2 + width)
}

/// Line number (1-based) of each offset, by the offsets where lines start.
struct Lines(Vec<usize>);

impl Lines {
    fn of(code: &[u8]) -> Self {
        let starts = std::iter::once(0)
            .chain(
                code.iter()
                    .enumerate()
                    .filter(|(_, &b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        Lines(starts)
    }

    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

fn skip_whitespace(code: &[u8], mut i: usize) -> usize {
    while i < code.len() && code[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The identifier starting at `at`, if one does.
fn ident_at(code: &[u8], at: usize) -> Option<&str> {
    let len = code[at..].iter().take_while(|&&b| is_ident_byte(b)).count();
    if len == 0 || code[at].is_ascii_digit() {
        return None;
    }
    std::str::from_utf8(&code[at..at + len]).ok()
}

/// Every crate path in the code: its offset and its segments as written
/// (root included), one entry per leaf of a `use` group.
fn crate_paths(code: &[u8]) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let starts_token = i == 0 || !is_ident_byte(code[i - 1]);
        let root = if starts_token {
            ident_at(code, i)
        } else {
            None
        };
        let Some(root) = root else {
            i += 1;
            continue;
        };
        let after = i + root.len();
        if PATH_ROOTS.contains(&root) && code[after..].starts_with(b"::") {
            let (leaves, end) = path_tree(code, after + 2);
            for leaf in leaves {
                let mut segments = vec![root.to_string()];
                segments.extend(leaf);
                found.push((i, segments));
            }
            i = end;
        } else {
            i = after;
        }
    }
    found
}

/// Parses what follows `root::`: segments, then maybe a `{...}` group or `*`.
/// Returns each leaf path and the offset where the path ends.
fn path_tree(code: &[u8], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut segments = Vec::new();
    loop {
        i = skip_whitespace(code, i);
        if code.get(i) == Some(&b'{') {
            let (groups, end) = path_group(code, i + 1);
            let leaves = groups
                .into_iter()
                .map(|g| segments.iter().cloned().chain(g).collect())
                .collect();
            return (leaves, end);
        }
        if code.get(i) == Some(&b'*') {
            segments.push("*".to_string());
            return (vec![segments], i + 1);
        }
        let Some(segment) = ident_at(code, i) else {
            return (vec![segments], i);
        };
        segments.push(segment.to_string());
        i += segment.len();
        let next = skip_whitespace(code, i);
        if !code[next..].starts_with(b"::") {
            return (vec![segments], i);
        }
        i = next + 2;
    }
}

/// Parses the items of a `use` group whose first item starts at `i`.
fn path_group(code: &[u8], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut leaves = Vec::new();
    loop {
        i = skip_whitespace(code, i);
        match code.get(i) {
            None => return (leaves, i),
            Some(b'}') => return (leaves, i + 1),
            Some(b',') => i += 1,
            Some(_) => {
                let (items, end) = path_tree(code, i);
                // `self` in a group names the group's own prefix.
                leaves.extend(items.into_iter().map(|mut item| {
                    if item.last().is_some_and(|s| s == "self") {
                        item.pop();
                    }
                    item
                }));
                // Skip an `as` rename up to the next item.
                i = end;
                while i < code.len() && !matches!(code[i], b',' | b'}') {
                    i += 1;
                }
            }
        }
    }
}

/// The absolute module path a path written in module `base` names.
fn resolve(segments: &[String], base: &[String]) -> Vec<String> {
    let Some((root, rest)) = segments.split_first() else {
        return Vec::new();
    };
    match root.as_str() {
        "self" => base.iter().chain(rest).cloned().collect(),
        "super" => {
            let ups = 1 + rest.iter().take_while(|s| *s == "super").count();
            let kept = base.len().saturating_sub(ups);
            base[..kept]
                .iter()
                .chain(&rest[ups - 1..])
                .cloned()
                .collect()
        }
        _ => rest.to_vec(),
    }
}

/// The `mod name { ... }` blocks written inline in `code`.
fn inline_modules(code: &[u8]) -> Vec<InlineModule> {
    let mut modules = Vec::new();
    let mut i = 0;
    while let Some(p) = code[i..].windows(4).position(|w| w == b"mod ") {
        let at = i + p;
        i = at + 4;
        if at > 0 && is_ident_byte(code[at - 1]) {
            continue;
        }
        let name_at = skip_whitespace(code, i);
        let Some(name) = ident_at(code, name_at) else {
            continue;
        };
        let brace = skip_whitespace(code, name_at + name.len());
        if code.get(brace) != Some(&b'{') {
            continue;
        }
        modules.push(InlineModule {
            name: name.to_string(),
            body: brace..matching_brace(code, brace),
            is_test: has_cfg_test_attribute(code, at),
        });
    }
    modules
}

/// Whether the item starting at `item` (after any visibility) carries `#[cfg(test)]`.
fn has_cfg_test_attribute(code: &[u8], item: usize) -> bool {
    let mut before = String::from_utf8_lossy(&code[..item])
        .trim_end()
        .to_string();
    for visibility in ["pub(crate)", "pub(super)", "pub"] {
        if let Some(rest) = before.strip_suffix(visibility) {
            before = rest.trim_end().to_string();
            break;
        }
    }
    while before.ends_with(']') {
        let Some(open) = before.rfind("#[") else {
            return false;
        };
        let attribute: String = before[open..]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if attribute == "#[cfg(test)]" {
            return true;
        }
        before = before[..open].trim_end().to_string();
    }
    false
}

/// The offset just past the brace closing the one at `open`.
fn matching_brace(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, &b) in code.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// Each function with a body: its name, `fn` offset and body end.
fn functions(code: &[u8]) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(p) = code[i..].windows(3).position(|w| w == b"fn ") {
        let at = i + p;
        i = at + 3;
        if at > 0 && is_ident_byte(code[at - 1]) {
            continue;
        }
        let Some(name) = ident_at(code, skip_whitespace(code, i)) else {
            continue;
        };
        let Some(q) = code[i..].iter().position(|&b| b == b'{' || b == b';') else {
            continue;
        };
        if code[i + q] == b'{' {
            found.push((name.to_string(), at, matching_brace(code, i + q)));
        }
    }
    found
}

/// Functions longer than `limit` lines, outside test modules: name, first line, length.
fn long_functions(code: &[u8], limit: usize) -> Vec<(String, usize, usize)> {
    let lines = Lines::of(code);
    let test_bodies: Vec<_> = inline_modules(code)
        .into_iter()
        .filter(|m| m.is_test)
        .map(|m| m.body)
        .collect();
    functions(code)
        .into_iter()
        .filter(|(_, at, _)| !test_bodies.iter().any(|body| body.contains(at)))
        .map(|(name, at, end)| {
            let first = lines.line(at);
            (name, first, lines.line(end - 1) - first + 1)
        })
        .filter(|(_, _, length)| *length > limit)
        .collect()
}

/// The crate paths of a file, resolved against the (inline) module each sits in.
fn resolved_paths(file: &SourceFile) -> Vec<PathUse> {
    let lines = Lines::of(&file.code);
    let inline = inline_modules(&file.code);
    crate_paths(&file.code)
        .into_iter()
        .map(|(at, segments)| {
            let mut base = file.module.clone();
            base.extend(
                inline
                    .iter()
                    .filter(|m| m.body.contains(&at))
                    .map(|m| m.name.clone()),
            );
            PathUse {
                line: lines.line(at),
                target: resolve(&segments, &base),
            }
        })
        .filter(|use_| !use_.target.is_empty())
        .collect()
}

fn module_path_of(relative: &Path) -> Vec<String> {
    let mut module: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if module.len() > 1 && module.last().is_some_and(|last| last == "mod") {
        module.pop();
    }
    module
}

fn collect_rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_rs_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Every `.rs` file under `src/`, in path order.
fn source_files() -> Vec<SourceFile> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    collect_rs_files(&src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let relative = path.strip_prefix(&src).expect("under src");
            SourceFile {
                shown: format!("src/{}", relative.display()),
                module: module_path_of(relative),
                code: strip_comments_and_literals(&text),
                line_count: text.lines().count(),
                is_tests_file: path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n == "tests.rs" || n.ends_with("_tests.rs")),
            }
        })
        .collect()
}

/// An import between two sibling modules: of the crate root (`folder` is
/// empty) or of one module folder, such as `views` -> `freshness` in `api`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    folder: Vec<String>,
    from: String,
    to: String,
}

/// The sibling edge a file at `from` naming `to` makes, if any: at the
/// deepest folder both share, from the child holding the file to the child
/// named, when that child is a module (not an item of the folder's mod.rs).
fn sibling_edge(from: &[String], to: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Edge> {
    let shared = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if shared >= from.len() || shared >= to.len() {
        return None;
    }
    let named: Vec<String> = to[..=shared].to_vec();
    modules.contains(&named).then(|| Edge {
        folder: from[..shared].to_vec(),
        from: from[shared].clone(),
        to: to[shared].clone(),
    })
}

/// Every sibling edge of the sources, with where it is first seen.
fn import_edges(files: &[SourceFile]) -> BTreeMap<Edge, String> {
    let modules: BTreeSet<Vec<String>> = files
        .iter()
        .flat_map(|f| (1..=f.module.len()).map(|n| f.module[..n].to_vec()))
        .collect();
    let mut edges = BTreeMap::new();
    for file in files {
        for use_ in resolved_paths(file) {
            if let Some(edge) = sibling_edge(&file.module, &use_.target, &modules) {
                edges
                    .entry(edge)
                    .or_insert_with(|| format!("{}:{}", file.shown, use_.line));
            }
        }
    }
    edges
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Cycles of `graph`, one per back edge a depth-first search meets, each
/// as the path of nodes that closes on its first.
fn find_cycles(graph: &Graph) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnStack,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        graph: &'a Graph,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        marks.insert(node, Mark::OnStack);
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()).copied().unwrap_or(Mark::Unvisited) {
                Mark::Unvisited => visit(next, graph, marks, stack, cycles),
                Mark::OnStack => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|n| n.to_string()).collect();
                    cycle.push(next.clone());
                    cycles.push(cycle);
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node, Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut cycles = Vec::new();
    for node in graph.keys() {
        if !marks.contains_key(node.as_str()) {
            visit(node, graph, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}

fn folder_name(folder: &[String]) -> String {
    if folder.is_empty() {
        "src/".to_string()
    } else {
        format!("src/{}/", folder.join("/"))
    }
}

/// Fails with every violation listed, or passes when there is none.
fn assert_none(what: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{what}: {} violation(s)\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[test]
fn engine_modules_name_nothing_of_the_shop() {
    let mut violations = Vec::new();
    for file in source_files() {
        if !ENGINE_MODULES.contains(&file.module[0].as_str()) {
            continue;
        }
        // One line per source line, however many names its `use` group holds.
        let mut by_line: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for use_ in resolved_paths(&file) {
            if SHOP_MODULES.contains(&use_.target[0].as_str()) {
                by_line
                    .entry(use_.line)
                    .or_default()
                    .push(format!("crate::{}", use_.target.join("::")));
            }
        }
        for (line, names) in by_line {
            violations.push(format!(
                "{}:{line}: {} is an engine module but names {}",
                file.shown,
                file.module[0],
                names.join(", ")
            ));
        }
    }
    assert_none(
        "the engine must not depend on the shop (domain, shop)",
        &violations,
    );
}

#[test]
fn modules_import_each_other_without_cycles() {
    let edges = import_edges(&source_files());
    let mut graphs: BTreeMap<Vec<String>, Graph> = BTreeMap::new();
    for edge in edges.keys() {
        graphs
            .entry(edge.folder.clone())
            .or_default()
            .entry(edge.from.clone())
            .or_default()
            .insert(edge.to.clone());
    }
    let mut violations = Vec::new();
    for (folder, graph) in &graphs {
        for cycle in find_cycles(graph) {
            let mut shown = format!(
                "import cycle among the modules of {}: {}",
                folder_name(folder),
                cycle.join(" -> ")
            );
            for pair in cycle.windows(2) {
                let edge = Edge {
                    folder: folder.clone(),
                    from: pair[0].clone(),
                    to: pair[1].clone(),
                };
                let at = edges.get(&edge).map_or("?", String::as_str);
                shown.push_str(&format!("\n    {} -> {} at {at}", pair[0], pair[1]));
            }
            violations.push(shown);
        }
    }
    assert_none("modules must not import each other in a cycle", &violations);
}

#[test]
fn nothing_imports_the_composition_root() {
    let violations: Vec<String> = import_edges(&source_files())
        .into_iter()
        .filter(|(edge, _)| {
            edge.folder.is_empty()
                && COMPOSITION_ROOT.contains(&edge.to.as_str())
                && !COMPOSITION_ROOT.contains(&edge.from.as_str())
        })
        .map(|(edge, at)| format!("{at}: {} names {}", edge.from, edge.to))
        .collect();
    assert_none(
        "only the composition root (cli, startup, main, lib) wires modules together",
        &violations,
    );
}

#[test]
fn production_files_stay_under_the_line_limit() {
    let violations: Vec<String> = source_files()
        .into_iter()
        .filter(|f| !f.is_tests_file && f.line_count > MAX_FILE_LINES)
        .map(|f| {
            format!(
                "{}:{}: {} lines, past the limit from this line on",
                f.shown,
                MAX_FILE_LINES + 1,
                f.line_count
            )
        })
        .collect();
    assert_none(
        &format!("production files in src/ must stay within {MAX_FILE_LINES} lines"),
        &violations,
    );
}

#[test]
fn functions_stay_under_the_line_limit() {
    let mut violations = Vec::new();
    for file in source_files().into_iter().filter(|f| !f.is_tests_file) {
        for (name, line, length) in long_functions(&file.code, MAX_FN_LINES) {
            violations.push(format!(
                "{}:{line}: fn {name} is {length} lines",
                file.shown
            ));
        }
    }
    assert_none(
        &format!("functions in src/ must stay within {MAX_FN_LINES} lines"),
        &violations,
    );
}

/// The checker's own parts, on small hand-made sources.
mod checker {
    use super::*;

    fn code(text: &str) -> Vec<u8> {
        strip_comments_and_literals(text)
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn graph(edges: &[(&str, &str)]) -> Graph {
        let mut graph = Graph::new();
        for (from, to) in edges {
            graph
                .entry(from.to_string())
                .or_default()
                .insert(to.to_string());
        }
        graph
    }

    #[test]
    fn comments_and_literals_are_blanked_but_lines_kept() {
        let text = "use crate::a; // crate::b\n/* crate::c /* nested */ crate::d */\n\
                    let s = \"crate::e\"; let r = r#\"crate::f \"x\" \"#;\n\
                    let c = '{'; let q = '\\''; fn f<'a>(x: &'a str) {}\n/// crate::g\n";
        let stripped = String::from_utf8(code(text)).expect("ascii");
        assert_eq!(stripped.lines().count(), text.lines().count());
        assert_eq!(stripped.len(), text.len());
        let found: Vec<Vec<String>> = crate_paths(stripped.as_bytes())
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(found, [strings(&["crate", "a"])]);
        assert_eq!(
            stripped.matches('{').count(),
            1,
            "the brace in '{{' is blanked"
        );
        assert!(stripped.contains("<'a>"), "lifetimes stay: {stripped}");
    }

    #[test]
    fn use_groups_and_super_chains_resolve_to_absolute_paths() {
        let text = "use crate::{domain::order, store::{self, x as y}};\n\
                    use super::super::shop::Thing;\nfn f() { galley::api::serve(); }";
        let base = strings(&["store", "queries"]);
        let resolved: Vec<Vec<String>> = crate_paths(&code(text))
            .into_iter()
            .map(|(_, p)| resolve(&p, &base))
            .collect();
        assert_eq!(
            resolved,
            [
                strings(&["domain", "order"]),
                strings(&["store"]),
                strings(&["store", "x"]),
                strings(&["shop", "Thing"]),
                strings(&["api", "serve"]),
            ]
        );
        assert_eq!(
            resolve(
                &strings(&["super", "freshness", "f"]),
                &strings(&["api", "views"])
            ),
            strings(&["api", "freshness", "f"])
        );
    }

    #[test]
    fn sibling_edges_are_found_at_the_deepest_shared_folder() {
        let modules: BTreeSet<Vec<String>> = [
            strings(&["api"]),
            strings(&["api", "views"]),
            strings(&["api", "freshness"]),
            strings(&["store"]),
        ]
        .into_iter()
        .collect();
        let views = strings(&["api", "views"]);
        let edge = sibling_edge(&views, &strings(&["api", "freshness", "f"]), &modules)
            .expect("sibling files");
        assert_eq!(
            (edge.folder, edge.from, edge.to),
            (strings(&["api"]), "views".into(), "freshness".into())
        );
        let edge = sibling_edge(&views, &strings(&["store", "x"]), &modules).expect("top level");
        assert_eq!(
            (edge.folder, edge.from, edge.to),
            (vec![], "api".into(), "store".into())
        );
        // An item of api/mod.rs, and a module naming its own child, are no sibling edges.
        assert!(sibling_edge(&views, &strings(&["api", "ApiError"]), &modules).is_none());
        assert!(sibling_edge(&strings(&["api"]), &views, &modules).is_none());
    }

    #[test]
    fn the_cycle_finder_reports_a_cycle_path_and_nothing_for_a_dag() {
        let dag = graph(&[("cli", "config"), ("cli", "store"), ("store", "config")]);
        assert!(find_cycles(&dag).is_empty());
        let cyclic = graph(&[
            ("cli", "config"),
            ("config", "store"),
            ("store", "telemetry"),
            ("telemetry", "config"),
        ]);
        assert_eq!(
            find_cycles(&cyclic),
            [strings(&["config", "store", "telemetry", "config"])]
        );
        let pair = graph(&[("views", "freshness"), ("freshness", "views")]);
        assert_eq!(
            find_cycles(&pair),
            [strings(&["freshness", "views", "freshness"])]
        );
    }

    #[test]
    fn function_length_runs_from_the_fn_line_to_its_closing_brace() {
        let text = "fn short() {\n    let x = '}';\n}\n\
                    pub fn long(\n    a: u8,\n) -> u8 {\n    if a > 0 {\n        a\n    } else {\n        0\n    }\n}\n\
                    trait T { fn declared(&self); }\n\
                    #[cfg(test)]\nmod tests {\n    fn in_tests() {\n\n\n\n    }\n}\n";
        let all: Vec<(String, usize, usize)> = long_functions(&code(text), 0);
        let shown: Vec<(&str, usize, usize)> = all
            .iter()
            .map(|(name, line, length)| (name.as_str(), *line, *length))
            .collect();
        assert_eq!(shown, [("short", 1, 3), ("long", 4, 9)]);
        assert_eq!(long_functions(&code(text), 8).len(), 1);
        assert!(long_functions(&code(text), 9).is_empty());
    }

    #[test]
    fn cfg_test_is_recognised_through_other_attributes_and_visibility() {
        let text = "#[cfg(test)]\n#[allow(dead_code)]\npub(crate) mod helpers { }\nmod plain { }\n";
        let modules = inline_modules(&code(text));
        let marks: Vec<(&str, bool)> = modules
            .iter()
            .map(|m| (m.name.as_str(), m.is_test))
            .collect();
        assert_eq!(marks, [("helpers", true), ("plain", false)]);
    }
}
