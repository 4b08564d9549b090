//! Rewrites README.md's configuration table and `.env.example` from the variable
//! declarations in `core/src/settings/`. Run it after adding or changing a variable:
//!
//! ```sh
//! cargo run -p iptrack-core --example settings-docs
//! ```

use std::{path::PathBuf, process::ExitCode};

use iptrack_core::settings::docs;

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme_path = root.join("README.md");
    let result = std::fs::read_to_string(&readme_path).and_then(|readme| {
        let Some(readme) = docs::readme_with_table(&readme) else {
            return Err(std::io::Error::other(format!(
                "README.md lacks the lines {:?} and {:?}",
                docs::README_TABLE_START,
                docs::README_TABLE_END
            )));
        };
        std::fs::write(&readme_path, readme)?;
        std::fs::write(root.join(".env.example"), docs::env_example())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("settings-docs: {error}");
            ExitCode::from(2)
        }
    }
}
