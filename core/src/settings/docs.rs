//! README's configuration table and `.env.example`, written from the declarations
//! (`registry::VARIABLES`). `cargo run -p iptrack-core --example settings-docs` rewrites
//! both; `core/tests/env_example.rs` fails when either differs from what this writes.

use std::fmt::Write;

use super::registry::{VARIABLES, Variable};

/// Lines around the generated table in README.md.
pub const README_TABLE_START: &str = "<!-- configuration table: generated from core/src/settings/ by `cargo run -p iptrack-core --example settings-docs` -->";
pub const README_TABLE_END: &str = "<!-- end of configuration table -->";

/// The markdown table of every variable: name, default, meaning.
pub fn readme_table() -> String {
    let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for var in VARIABLES.iter() {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            var.name,
            shown_default(var),
            var.doc
        );
    }
    out
}

fn shown_default(var: &Variable) -> String {
    match (var.shown_default, var.default) {
        (Some(shown), _) => shown.to_owned(),
        (None, Some(value)) => format!("`{value}`"),
        (None, None) => "(none)".to_owned(),
    }
}

/// `readme` with the text between the table markers replaced by [`readme_table`], or
/// `None` when the markers are missing.
pub fn readme_with_table(readme: &str) -> Option<String> {
    let start = readme.find(README_TABLE_START)? + README_TABLE_START.len();
    let end = readme[start..].find(README_TABLE_END)? + start;
    Some(format!(
        "{}\n{}{}",
        &readme[..start],
        readme_table(),
        &readme[end..]
    ))
}

const ENV_EXAMPLE_HEADER: &str = "\
# iptrack settings, all optional; the values shown are the defaults. iptrack reads the
# environment (and an optional --config TOML file), not this file: copy it, change what you
# need and export it, e.g. `cp .env.example my.env; set -a; . ./my.env; set +a`. Values with
# spaces or shell characters are single-quoted so that a POSIX shell loads them as written.
# Generated from core/src/settings/ (`cargo run -p iptrack-core --example settings-docs`);
# README.md's configuration table says the same.
";

/// `.env.example`: every variable with its documentation as a comment and its default.
/// A variable without a default is written empty, which iptrack reads as unset.
pub fn env_example() -> String {
    let mut out = String::from(ENV_EXAMPLE_HEADER);
    for var in VARIABLES.iter() {
        out.push('\n');
        let doc = var.doc.trim_end_matches('.');
        let mut chars = doc.chars();
        let sentence = match chars.next() {
            Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
            None => String::new(),
        };
        for line in wrap(&sentence, 90) {
            let _ = writeln!(out, "# {line}");
        }
        if var.default.is_none()
            && let Some(shown) = var.shown_default
        {
            let _ = writeln!(out, "# Unset: {}.", shown.trim_matches(['(', ')']));
        }
        let value = var.default.map(shell_quoted).unwrap_or_default();
        let comment = if var.commented_in_example { "# " } else { "" };
        let _ = writeln!(out, "{comment}{}={value}", var.name);
    }
    out
}

/// `value` as a POSIX shell reads it back unchanged: bare when it holds only characters
/// no shell treats specially, otherwise in single quotes (defaults hold no `'`).
fn shell_quoted(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-./:,=@%+".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
