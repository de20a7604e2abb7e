//! The controller's module map, enforced: imports go down the layers
//! (`api` → `leader` → `core` → `raft` → `scheduler` → `state`, each only
//! below itself), and no two sibling modules import each other, directly
//! or round a loop. Reads the sources (what `use` and paths name), so a
//! change that breaks the map fails here with the edge that broke it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules, highest first: each may import only those after it.
const LAYERS: [&str; 6] = ["api", "leader", "core", "raft", "scheduler", "state"];
/// Leaves anyone may use.
const SHARED: [&str; 1] = ["error"];

/// A module path ("api::jobs::ops") for every source file.
fn modules(root: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let mut here = prefix.to_vec();
            if path.is_dir() {
                here.push(name);
                walk(&path, &here, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            if !matches!(name.as_str(), "mod" | "lib" | "main") {
                here.push(name);
            }
            out.insert(here.join("::"), path);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &[], &mut out);
    out
}

/// The module paths a file's code names: `crate::a::b`, `super::x` and
/// `use` groups, resolved against the module tree (items are dropped).
fn references(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let own: Vec<&str> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    let mut out = BTreeSet::new();
    let mut add = |mut path: Vec<String>| {
        // The longest prefix that is a module.
        while !path.is_empty() {
            let p = path.join("::");
            if known.contains(&p) {
                out.insert(p);
                return;
            }
            path.pop();
        }
    };
    let bytes = code.as_bytes();
    for (start, anchor) in [("crate::", 0), ("super::", 1)] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0
                && (bytes[at - 1].is_ascii_alphanumeric() || matches!(bytes[at - 1], b'_' | b':'))
            {
                continue;
            }
            // super:: may repeat.
            let mut base: Vec<String> = if anchor == 0 {
                Vec::new()
            } else {
                let mut b: Vec<String> = own.iter().map(|s| s.to_string()).collect();
                // A module's `super` is its parent.
                b.pop();
                b
            };
            let mut rest = &code[from..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            let tail: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if rest[tail.len()..].starts_with('{') {
                // `use x::{a, b::c}`: each member.
                let group = tail.trim_end_matches("::");
                let body = &rest[tail.len() + 1..];
                let end = body.find('}').unwrap_or(body.len());
                let mut prefix = base.clone();
                prefix.extend(
                    group
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
                for member in body[..end].split(',') {
                    let member = member.trim().trim_start_matches("self");
                    let mut p = prefix.clone();
                    p.extend(
                        member
                            .split("::")
                            .filter(|s| !s.is_empty())
                            .map(String::from),
                    );
                    add(p);
                }
            } else {
                let mut p = base;
                p.extend(tail.split("::").filter(|s| !s.is_empty()).map(String::from));
                add(p);
            }
        }
    }
    out
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap_or(m)
}

#[test]
fn imports_go_down_the_layers_and_siblings_never_loop() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&root);
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    for (m, path) in &mods {
        let text = std::fs::read_to_string(path).unwrap();
        for r in references(m, &text, &known) {
            if &r != m {
                edges.insert((m.clone(), r));
            }
        }
    }
    assert!(
        edges.len() > 50,
        "the scan found only {} imports; is it still reading the sources?",
        edges.len()
    );
    let mut wrong = Vec::new();
    // Layers: only down.
    for (from, to) in &edges {
        let (a, b) = (top(from), top(to));
        let (Some(ia), Some(ib)) = (
            LAYERS.iter().position(|l| *l == a),
            LAYERS.iter().position(|l| *l == b),
        ) else {
            continue;
        };
        if ib < ia {
            wrong.push(format!("{from} imports {to}: {a} is below {b}"));
        }
    }
    // Siblings: no loop among the children of any module.
    let parents: BTreeSet<String> = known
        .iter()
        .map(|m| {
            m.rsplit_once("::")
                .map_or(String::new(), |(p, _)| p.to_string())
        })
        .collect();
    for parent in &parents {
        let child_of = |m: &str| -> Option<String> {
            let rest = if parent.is_empty() {
                m
            } else {
                m.strip_prefix(parent.as_str())?.strip_prefix("::")?
            };
            let c = rest.split("::").next()?;
            (!c.is_empty()).then(|| c.to_string())
        };
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in &edges {
            if let (Some(a), Some(b)) = (child_of(from), child_of(to)) {
                if a != b && !SHARED.contains(&b.as_str()) {
                    graph.entry(a).or_default().insert(b);
                }
            }
        }
        for start in graph.keys() {
            // Depth-first from `start`, looking for a way back.
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((at, trail)) = stack.pop() {
                for next in graph.get(&at).into_iter().flatten() {
                    if next == start {
                        let mut loop_ = trail.clone();
                        loop_.push(next.clone());
                        wrong.push(format!(
                            "a loop under {}: {}",
                            if parent.is_empty() {
                                "the crate root"
                            } else {
                                parent
                            },
                            loop_.join(" → ")
                        ));
                    } else if seen.insert(next.clone()) {
                        let mut t = trail.clone();
                        t.push(next.clone());
                        stack.push((next.clone(), t));
                    }
                }
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "the module map is broken:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_sees_a_loop_when_there_is_one() {
    let known: BTreeSet<String> = ["a", "b", "a::x"].iter().map(|s| s.to_string()).collect();
    let a = references(
        "a",
        "use crate::b::Thing;\nfn f() { crate::a::x::g() }",
        &known,
    );
    assert_eq!(a, ["a::x".to_string(), "b".to_string()].into());
    let b = references("b", "use super::{a::x, Other};", &known);
    assert_eq!(b, ["a::x".to_string()].into());
    // A file's `super` is its parent module; `super::super` the one above.
    let x = references("a::x", "use super::super::b;", &known);
    assert_eq!(x, ["b".to_string()].into());
}
