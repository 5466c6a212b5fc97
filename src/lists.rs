//! Parsing of the list arguments (`--imports`, `--only`, `--add`, `--remove`).
//!
//! The syntax is Binaryen's, so a post-link line written for
//! `wasm-opt --asyncify --pass-arg=asyncify-removelist@...` carries over:
//! - a value is split on commas, except commas inside brackets, because
//!   demangled C++ names carry them (`foo(int, char)`, `std::map<int, int>`);
//! - a value `@path` is a response file instead, with one entry per line and
//!   no comma splitting (a line is a whole name, commas included).
//!
//! Every flag may be repeated; the entries of all its values are concatenated.

use anyhow::{Context, Result};
use std::path::Path;

/// Expands every value of one list flag into its entries, in order.
///
/// `@file` values are read through `read_file` so that tests need no files;
/// the error names the file and the flag it was given to.
pub fn expand(
    flag: &str,
    values: &[String],
    read_file: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<Vec<String>> {
    let mut entries = Vec::new();
    for value in values {
        match value.strip_prefix('@') {
            Some(path) => {
                let text = read_file(Path::new(path))
                    .with_context(|| format!("failed to read the {flag} list file `{path}`"))?;
                entries.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|line| !line.is_empty())
                        .map(String::from),
                );
            }
            None => entries.extend(split(value)),
        }
    }
    Ok(entries)
}

/// Splits one list value on commas that are outside every bracket pair
/// (`()`, `[]`, `{}`, `<>`); entries are trimmed and empty ones dropped.
///
/// The `<` and `>` of C++ operator names (`operator<`, `operator->`,
/// `operator>>=`) are not brackets, nor is the comma of `operator,`; without
/// that rule `operator<(int, int)` would swallow every entry after it.
pub fn split(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    let mut entries = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if word_start && bytes[i..].starts_with(b"operator") {
            i += "operator".len() + operator_symbol_len(&bytes[i + "operator".len()..]);
            continue;
        }
        match bytes[i] {
            b'(' | b'[' | b'{' | b'<' => depth += 1,
            // Saturating: an unbalanced closer must not make later commas
            // look nested.
            b')' | b']' | b'}' | b'>' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                entries.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    entries.push(&value[start..]);
    entries
        .into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect()
}

/// Length of the symbol that names a C++ operator right after the keyword
/// `operator` (leading spaces included): `()` and `[]` whole, else the run of
/// operator characters. Zero for a conversion operator or a longer identifier
/// such as `operator_new`.
fn operator_symbol_len(rest: &[u8]) -> usize {
    let spaces = rest.iter().take_while(|&&c| c == b' ').count();
    let sym = &rest[spaces..];
    if sym.starts_with(b"()") || sym.starts_with(b"[]") {
        return spaces + 2;
    }
    let run = sym
        .iter()
        .take_while(|c| b"<>=!+-*/%^&|~,".contains(c))
        .count();
    if run == 0 {
        0
    } else {
        spaces + run
    }
}

#[cfg(test)]
mod tests {
    use super::{expand, split};
    use std::path::Path;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn plain_commas_split() {
        assert_eq!(split("env.a,env.b"), s(&["env.a", "env.b"]));
        assert_eq!(split(" a , b ,, c,"), s(&["a", "b", "c"]));
        assert_eq!(split(""), Vec::<String>::new());
    }

    #[test]
    fn commas_inside_brackets_stay() {
        assert_eq!(split("foo(int, char),bar"), s(&["foo(int, char)", "bar"]));
        assert_eq!(
            split("std::map<int, char>::at(int const&),g[1,2],h{a,b}"),
            s(&["std::map<int, char>::at(int const&)", "g[1,2]", "h{a,b}"])
        );
        assert_eq!(split("f(g(a, b), c), d"), s(&["f(g(a, b), c)", "d"]));
    }

    #[test]
    fn operator_names_are_not_brackets() {
        assert_eq!(
            split("operator<(int, int),next"),
            s(&["operator<(int, int)", "next"])
        );
        assert_eq!(
            split("A::operator->() const,B::operator>>=(int),C::operator,(int, int),x"),
            s(&[
                "A::operator->() const",
                "B::operator>>=(int)",
                "C::operator,(int, int)",
                "x"
            ])
        );
        assert_eq!(
            split("operator()(int, int),operator[](long),operator_new,y"),
            s(&[
                "operator()(int, int)",
                "operator[](long)",
                "operator_new",
                "y"
            ])
        );
        // Only the keyword counts, not a word that ends in it.
        assert_eq!(
            split("cooperator<int, int>,z"),
            s(&["cooperator<int, int>", "z"])
        );
    }

    #[test]
    fn unbalanced_closers_do_not_nest() {
        assert_eq!(split("a),b"), s(&["a)", "b"]));
    }

    #[test]
    fn response_files_have_one_entry_per_line() {
        let read = |p: &Path| {
            assert_eq!(p, Path::new("names.txt"));
            Ok("foo(int, char)\r\n\n  bar  \nbaz\n".to_string())
        };
        let got = expand("--remove", &s(&["x,y", "@names.txt", "z"]), read).unwrap();
        assert_eq!(got, s(&["x", "y", "foo(int, char)", "bar", "baz", "z"]));
    }

    #[test]
    fn missing_response_file_names_the_file_and_flag() {
        let read = |_: &Path| Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        let err = expand("--only", &s(&["@nope.txt"]), read).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("`nope.txt`"), "{msg}");
        assert!(msg.contains("--only"), "{msg}");
    }
}
