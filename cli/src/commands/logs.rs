//! `iptrack logs`: the most recent request-log rows, through the same query as the admin
//! API's `GET /api/v1/logs` (`iptrack_entity::query::logs`), following its cursor when
//! more rows are asked for than one page holds.

use anyhow::Context;
use iptrack_core::Settings;
use iptrack_entity::query::logs::{self, Cursor, LogFilter};

pub async fn run(
    settings: &Settings,
    ip: Option<String>,
    limit: u64,
    json: bool,
) -> anyhow::Result<()> {
    let db = super::connect_db(settings).await?;
    let filter = LogFilter {
        ip_address: ip,
        ..LogFilter::default()
    };
    let mut rows = Vec::new();
    let mut cursor = None;
    while (rows.len() as u64) < limit {
        let wanted = (limit - rows.len() as u64).min(logs::MAX_PAGE_SIZE);
        let page = logs::page(&db, &filter, cursor, wanted)
            .await
            .context("cannot read request_log")?;
        rows.extend(page.items);
        match page.next_cursor.as_deref().map(Cursor::decode) {
            Some(Ok(next)) => cursor = Some(next),
            _ => break,
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no requests logged");
        return Ok(());
    }
    let mut table = super::table(&[
        "time (UTC)",
        "address",
        "method",
        "path",
        "status",
        "country",
    ]);
    for row in rows {
        table.add_row(vec![
            row.timestamp.format("%Y-%m-%d %H:%M:%S").to_string(),
            row.ip_address,
            row.method,
            row.path,
            row.status.to_string(),
            row.country_code,
        ]);
    }
    println!("{table}");
    Ok(())
}
