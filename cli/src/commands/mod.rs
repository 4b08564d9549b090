pub mod block;
pub mod flag_suspicious;
pub mod migrate;
pub mod suspicious;
pub mod up;

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

/// A table for listings, in the style every listing command shares.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header(header);
    table
}
