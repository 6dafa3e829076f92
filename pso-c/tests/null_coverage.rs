//! Every `pso_` function of `include/pso.h` is called by the C tests with
//! NULL for each pointer parameter, and with a string that is not UTF-8 for
//! each string parameter.
//!
//! # The rule
//! * The functions are the declarations in `include/pso.h` (comments,
//!   preprocessor lines and C++-only blocks removed; `typedef`s and `struct`/`enum` bodies are not
//!   functions).
//! * A *pointer parameter* is one whose declared type contains `*` or is a
//!   function-pointer typedef (`pso_*_fn`): handles are passed by value and
//!   are not pointers. Each needs a call with the argument written `NULL`.
//! * A *string parameter* is one declared `const char *`. Each needs a call
//!   with the argument `BAD_UTF8` (defined in `pso-c/tests/c/check.h`, and
//!   checked here not to be UTF-8) or a string literal whose bytes are not
//!   UTF-8.
//! * Calls are read from `pso-c/tests/c/*.c` (comments removed; a call inside
//!   a macro argument such as `CHECK_STATUS(pso_x(...), ...)` counts). What a
//!   call must return is for the C test to check, not for this test.
//! * Functions without pointer parameters are exempt (nothing to check).
//!
//! The calls that exist only for this rule are in `pso-c/tests/c/test_null.c`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One parameter of a declared function.
#[derive(Debug)]
struct Param {
    name: String,
    pointer: bool,
    string: bool,
}

/// Removes `/* */` and `//` comments, keeping string and character literals
/// (and the line structure, for nothing else needs it).
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = src[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
                out.push(b' ');
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            q @ (b'"' | b'\'') => {
                out.push(q);
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        out.push(b[i]);
                        i += 1;
                    }
                    out.push(b[i]);
                    i += 1;
                }
                if i < b.len() {
                    out.push(q);
                    i += 1;
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The functions declared in the header, with their parameters.
fn declarations(header: &str) -> BTreeMap<String, Vec<Param>> {
    // Drop preprocessor lines, and the C++-only `extern "C" {` / `}` lines.
    let mut cplusplus = false;
    let text: String = strip_comments(header)
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            if l.starts_with("#ifdef __cplusplus") {
                cplusplus = true;
            } else if l.starts_with("#endif") {
                cplusplus = false;
            }
            !cplusplus && !l.starts_with('#')
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeMap::new();
    let mut depth = 0usize;
    let mut stmt = String::new();
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        stmt.push(c);
        if c == ';' && depth == 0 {
            let s = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
            stmt.clear();
            if s.starts_with("typedef") || s.contains('{') {
                continue;
            }
            let (Some(open), Some(close)) = (s.find('('), s.rfind(')')) else {
                continue;
            };
            let name = s[..open].trim_end();
            let start = name
                .bytes()
                .rposition(|c| !is_ident(c))
                .map_or(0, |p| p + 1);
            let name = &name[start..];
            if !name.starts_with("pso_") {
                continue;
            }
            let params = s[open + 1..close]
                .split(',')
                .map(str::trim)
                .filter(|p| *p != "void" && !p.is_empty())
                .map(|p| {
                    let split = p.bytes().rposition(|c| !is_ident(c)).map_or(0, |i| i + 1);
                    let ty = p[..split].trim();
                    Param {
                        name: p[split..].to_owned(),
                        pointer: ty.contains('*') || ty.ends_with("_fn"),
                        string: ty == "const char *",
                    }
                })
                .collect();
            out.insert(name.to_owned(), params);
        }
    }
    out
}

/// Splits the argument list that starts after `open` (just past a `(`) at
/// its top-level commas; `None` if the parenthesis is not closed.
fn call_args(src: &[u8], open: usize) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut cur = Vec::new();
    let mut i = open;
    while i < src.len() {
        let c = src[i];
        match c {
            b'"' | b'\'' => {
                cur.push(c);
                i += 1;
                while i < src.len() && src[i] != c {
                    if src[i] == b'\\' {
                        cur.push(src[i]);
                        i += 1;
                    }
                    cur.push(src[i]);
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth == 0 => {
                args.push(String::from_utf8_lossy(&cur).trim().to_owned());
                return Some(args);
            }
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                args.push(String::from_utf8_lossy(&cur).trim().to_owned());
                cur.clear();
                i += 1;
                continue;
            }
            _ => {}
        }
        if i < src.len() {
            cur.push(src[i]);
        }
        i += 1;
    }
    None
}

/// The bytes of a C expression made only of adjacent string literals, or
/// `None` if it is anything else.
fn literal_bytes(expr: &str) -> Option<Vec<u8>> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut any = false;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b[i] != b'"' {
            return None;
        }
        any = true;
        i += 1;
        while i < b.len() && b[i] != b'"' {
            if b[i] != b'\\' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            i += 1;
            let e = *b.get(i)?;
            match e {
                b'x' => {
                    let digits = b[i + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_hexdigit())
                        .count();
                    let hex = std::str::from_utf8(&b[i + 1..i + 1 + digits]).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 1 + digits;
                }
                b'0'..=b'7' => {
                    let digits = b[i..]
                        .iter()
                        .take(3)
                        .take_while(|c| (b'0'..=b'7').contains(c))
                        .count();
                    let oct = std::str::from_utf8(&b[i..i + digits]).ok()?;
                    out.push(u8::from_str_radix(oct, 8).ok()?);
                    i += digits;
                }
                other => {
                    out.push(match other {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        c => c,
                    });
                    i += 1;
                }
            }
        }
        i += 1;
    }
    any.then_some(out)
}

/// For each function called in `sources`: the argument positions that were
/// NULL in some call, and those that were not UTF-8 in some call.
type Seen = BTreeMap<String, (BTreeSet<usize>, BTreeSet<usize>)>;

fn scan_calls(sources: &[(PathBuf, String)], functions: &BTreeSet<&str>) -> Seen {
    let mut seen = Seen::new();
    for (_, src) in sources {
        let src = strip_comments(src);
        let b = src.as_bytes();
        let mut i = 0;
        while let Some(p) = src[i..].find("pso_") {
            let start = i + p;
            i = start + 4;
            if start > 0 && is_ident(b[start - 1]) {
                continue;
            }
            let end = start + b[start..].iter().take_while(|c| is_ident(**c)).count();
            let name = &src[start..end];
            let after = src[end..].trim_start();
            if !functions.contains(name) || !after.starts_with('(') {
                continue;
            }
            let open = src.len() - after.len() + 1;
            let Some(args) = call_args(b, open) else {
                continue;
            };
            let entry = seen.entry(name.to_owned()).or_default();
            for (k, a) in args.iter().enumerate() {
                if a == "NULL" {
                    entry.0.insert(k);
                }
                let bad = a == "BAD_UTF8"
                    || literal_bytes(a).is_some_and(|bytes| std::str::from_utf8(&bytes).is_err());
                if bad {
                    entry.1.insert(k);
                }
            }
        }
    }
    seen
}

fn c_sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

#[test]
fn bad_utf8_in_check_h_is_not_utf8() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
    let check = strip_comments(&std::fs::read_to_string(dir.join("check.h")).unwrap());
    let def = check
        .lines()
        .find(|l| l.contains("BAD_UTF8[]"))
        .expect("check.h defines BAD_UTF8[]");
    let literal = def.split_once('=').unwrap().1.trim().trim_end_matches(';');
    let bytes = literal_bytes(literal).expect("BAD_UTF8 is a string literal");
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "BAD_UTF8 is UTF-8: {bytes:?}"
    );
}

#[test]
fn every_pointer_argument_is_tested_with_null_and_every_string_with_bad_utf8() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("../include/pso.h")).unwrap();
    let decls = declarations(&header);
    assert!(
        decls.len() >= 100,
        "only {} functions parsed from pso.h",
        decls.len()
    );
    let names: BTreeSet<&str> = decls.keys().map(String::as_str).collect();
    let sources = c_sources(&root.join("tests/c"));
    let seen = scan_calls(&sources, &names);

    let mut missing = Vec::new();
    let (mut required, mut exempt) = (0, 0);
    for (f, params) in &decls {
        if !params.iter().any(|p| p.pointer) {
            exempt += 1;
            continue;
        }
        let (nulls, bads) = seen.get(f).cloned().unwrap_or_default();
        for (k, p) in params.iter().enumerate() {
            if p.pointer {
                required += 1;
                if !nulls.contains(&k) {
                    missing.push(format!("{f}: NULL for `{}` (argument {})", p.name, k + 1));
                }
            }
            if p.string {
                required += 1;
                if !bads.contains(&k) {
                    missing.push(format!(
                        "{f}: invalid UTF-8 for `{}` (argument {})",
                        p.name,
                        k + 1
                    ));
                }
            }
        }
    }
    eprintln!(
        "{} functions in pso.h ({exempt} without pointer parameters); {required} NULL/UTF-8 calls required; {} missing",
        decls.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "calls missing from pso-c/tests/c/*.c ({}):\n{}",
        missing.len(),
        missing.join("\n")
    );
}
