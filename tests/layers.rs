//! The workspace's layering, checked from the sources: every crate depends
//! only on crates of lower layers, and inside every crate the top-level
//! modules' `crate::` references form no cycle (test code aside). A new
//! edge that closes a circle fails here, naming it, before it knots the
//! code together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates bottom-up: a crate may use crates of lower layers only.
const LAYERS: &[&[&str]] = &[
    // The generators and the contract generated with them.
    &["trading-pro-codegen"],
    &["trading-pro"],
    // The market-data domain.
    &["trading-market"],
    // The paper broker's domain: orders, the matcher, accounts.
    &["trading-broker"],
    // Where bars come from: the synthetic market and the stores.
    &["trading-synthetic", "trading-store"],
    // How nodes share a store's writes.
    &["trading-bus"],
    // The server, and the client the other side uses.
    &["trading-server", "trading-pro-client"],
    // Measures the server through its client and binary.
    &["trading-bench"],
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn layer_of(name: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&name))
        .unwrap_or_else(|| panic!("{name} is in no layer of tests/layers.rs"))
}

/// The crate's name and the workspace crates its Cargo.toml depends on
/// (`path =` dependencies and build-dependencies; a crate's tests may use
/// any crate, as the server's use the client).
fn manifest(dir: &Path) -> (String, BTreeSet<String>) {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    let mut name = None;
    let mut section = String::new();
    let mut deps = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_string();
        } else if section == "package" && line.starts_with("name") {
            name = line.split('"').nth(1).map(str::to_string);
        } else if (section == "dependencies" || section == "build-dependencies")
            && line.contains("path =")
        {
            deps.insert(line.split([' ', '=']).next().unwrap().to_string());
        }
    }
    (name.expect("a package name"), deps)
}

fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![root()];
    for entry in std::fs::read_dir(root().join("crates")).expect("crates/") {
        let dir = entry.unwrap().path();
        if dir.join("Cargo.toml").is_file() {
            dirs.push(dir);
        }
    }
    dirs.sort();
    dirs
}

#[test]
fn every_crate_uses_only_lower_layers() {
    let mut problems = Vec::new();
    for dir in crate_dirs() {
        let (name, deps) = manifest(&dir);
        let own = layer_of(&name);
        for dep in deps {
            if layer_of(&dep) >= own {
                problems.push(format!(
                    "{name} (layer {own}) uses {dep} (layer {})",
                    layer_of(&dep)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules `text` names through `crate::`, in `crate::a::..`
/// and in `crate::{a::.., b}` alike.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        // `trading_store::x` is another crate, not this one's `crate::`.
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: split on commas at depth 0.
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(ident(&group[start..j]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&group[start..j]));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

/// The non-test code of a file: comments dropped, and nothing from a
/// `#[cfg(test)]` module on (such modules end our files).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each top-level module of the crate in `src` and the top-level modules
/// it references.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        if rel.file_name().is_some_and(|f| f == "tests.rs") {
            continue;
        }
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" || top == "bin" {
            continue;
        }
        let deps = referenced(&code_of(&file));
        let entry = graph.entry(top.clone()).or_default();
        entry.extend(deps.into_iter().filter(|d| *d != top));
    }
    graph
}

/// The cycles of `graph`: its strongly connected components of more than
/// one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in &self.graph[v] {
                let Some((w, _)) = self.graph.get_key_value(w.as_str()) else {
                    continue; // an item of the crate root, not a module
                };
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let low = self.low[w.as_str()].min(self.low[v]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w.as_str()) {
                    let low = self.index[w.as_str()].min(self.low[v]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self.stack.iter().rposition(|m| *m == v).unwrap();
                let component: Vec<String> = self.stack.drain(at..).map(str::to_string).collect();
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn no_crate_has_a_module_cycle() {
    let mut problems = Vec::new();
    for dir in crate_dirs() {
        let (name, _) = manifest(&dir);
        let graph = module_graph(&dir.join("src"));
        for cycle in cycles(&graph) {
            let edges: Vec<String> = cycle
                .iter()
                .map(|m| {
                    let inside: Vec<&str> = graph[m]
                        .iter()
                        .filter(|d| cycle.contains(d))
                        .map(String::as_str)
                        .collect();
                    format!("{m} -> {}", inside.join(", "))
                })
                .collect();
            problems.push(format!("{name}: {}", edges.join("; ")));
        }
    }
    assert!(
        problems.is_empty(),
        "module cycles:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    // The check above passes on a tree without cycles only if this one
    // can see them: a two-module and a three-module circle, grouped
    // imports included, beside an acyclic chain.
    let files = [
        ("a", "use crate::{b::X, c};"),
        ("b", "fn f() { crate::a::g() }"),
        ("c", "use crate::d;"),
        ("d", "use crate::e::Y;"),
        ("e", "use crate::{c as _, d};"),
        ("f", "use trading_store::a; use crate::g;"),
        ("g", ""),
    ];
    let graph: BTreeMap<String, BTreeSet<String>> = files
        .iter()
        .map(|(m, text)| (m.to_string(), referenced(text)))
        .collect();
    let mut found: Vec<Vec<String>> = cycles(&graph)
        .into_iter()
        .map(|mut c| {
            c.sort();
            c
        })
        .collect();
    found.sort();
    assert_eq!(found, [vec!["a", "b"], vec!["c", "d", "e"]]);
}
