//! What each part may depend on. The API gateway links no service and no
//! database driver: it routes requests and documents them from the
//! committed specs, nothing more. Each service's SQL names only its own
//! tables: the HTTP contract is all a service knows of another.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

#[test]
fn the_gateway_depends_on_no_service_and_no_sqlx() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["tree", "--offline", "--locked", "-p", "api-gateway"])
        .args(["-e", "normal", "--prefix", "none", "--format", "{p}"])
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"api-gateway"), "{tree}");
    assert!(crates.contains(&"valerix-runtime"), "{tree}");
    for banned in [
        "sqlx",
        "sqlx-core",
        "order-service",
        "inventory-service",
        "payment-service",
    ] {
        assert!(
            !crates.contains(&banned),
            "the gateway depends on {banned} again:\n{tree}"
        );
    }
}

/// The tables each service owns (the migrations create them all in one
/// database; only the operator's tools may read across).
const TABLES: &[(&str, &[&str])] = &[
    ("order", &["orders", "idempotency_keys"]),
    ("inventory", &["inventory", "reservations"]),
    ("payment", &["payments"]),
    ("gateway", &[]),
];

#[test]
fn each_service_names_only_its_own_tables_in_its_sql() {
    let services = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut found = Vec::new();
    for (service, own) in TABLES {
        let mut files = Vec::new();
        rust_files(&services.join(service).join("src"), &mut files);
        assert!(!files.is_empty(), "no sources found for {service}");
        for file in files {
            let source = fs::read_to_string(&file).expect("read a source file");
            for literal in string_literals(&source) {
                for table in tables_named(&literal) {
                    if !own.contains(&table) {
                        found.push(format!("{}: {table} in {literal:?}", file.display()));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "a service's SQL names another service's table (ask that service's API instead):\n  {}",
        found.join("\n  ")
    );
}

/// The check itself: it sees a table in a statement, in a raw string and
/// after an escaped quote, and not in comments or in a sentence.
#[test]
fn the_table_check_finds_a_statement_naming_a_table() {
    let source = r##"
        // SELECT price_cents FROM inventory
        let a = "say \"hi\" SELECT 1 FROM inventory i JOIN payments p ON true";
        let b = r#"INSERT INTO orders (id) VALUES ($1)"#;
        let c = 'x';
        let d = "the stock committed from the warehouse";
    "##;
    let named: Vec<&str> = string_literals(source)
        .iter()
        .flat_map(|l| tables_named(l))
        .collect();
    assert_eq!(named, ["inventory", "payments", "orders"]);
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The contents of the string literals of Rust source (plain and raw),
/// comments and char literals skipped.
fn string_literals(source: &str) -> Vec<String> {
    let chars: Vec<char> = source.chars().collect();
    let mut literals = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            // A char literal ('x', '\n', '"'); otherwise a lifetime.
            '\'' if chars.get(i + 1) == Some(&'\\') => {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            }
            '\'' if chars.get(i + 2) == Some(&'\'') => i += 3,
            'r' if matches!(chars.get(i + 1), Some('"' | '#'))
                && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')) =>
            {
                let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
                let start = i + 1 + hashes;
                if chars.get(start) != Some(&'"') {
                    i += 1;
                    continue;
                }
                let close: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let mut end = start + 1;
                while end < chars.len() && !chars[end..].starts_with(&close) {
                    end += 1;
                }
                literals.push(chars[start + 1..end.min(chars.len())].iter().collect());
                i = end + close.len();
            }
            '"' => {
                let mut literal = String::new();
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    if let Some(&c) = chars.get(i) {
                        literal.push(c);
                    }
                    i += 1;
                }
                literals.push(literal);
                i += 1;
            }
            _ => i += 1,
        }
    }
    literals
}

/// Known tables the text names where SQL names a table: after FROM, JOIN,
/// INTO, UPDATE, TABLE or REFERENCES.
fn tables_named(text: &str) -> Vec<&'static str> {
    let words: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let known = TABLES.iter().flat_map(|(_, tables)| tables.iter().copied());
    let known: Vec<&'static str> = known.collect();
    words
        .windows(2)
        .filter(|w| {
            matches!(
                w[0].as_str(),
                "from" | "join" | "into" | "update" | "table" | "references"
            )
        })
        .filter_map(|w| known.iter().copied().find(|t| *t == w[1]))
        .collect()
}
