//! `iptrack suspicious`: the most recently active flags (incidents).

use crate::output::say;
use anyhow::Context;
use iptrack_core::Settings;
use iptrack_entity::suspicious_ip;
use sea_orm::{EntityTrait, QueryOrder, QuerySelect};

pub async fn run(settings: &Settings, limit: u64, json: bool) -> anyhow::Result<()> {
    let db = super::connect_db(settings).await?;
    let flags = suspicious_ip::Entity::find()
        .order_by_desc(suspicious_ip::Column::LastSeen)
        .order_by_asc(suspicious_ip::Column::IpAddress)
        .limit(limit)
        .all(&db)
        .await
        .context("cannot read suspicious_ip")?;
    if json {
        say!("{}", serde_json::to_string_pretty(&flags)?);
        return Ok(());
    }
    if flags.is_empty() {
        say!("no suspicious addresses flagged");
        return Ok(());
    }
    let mut table = super::table(&[
        "address",
        "rule",
        "requests",
        "first seen (UTC)",
        "last seen (UTC)",
        "reason",
    ]);
    for flag in flags {
        table.add_row(vec![
            flag.ip_address,
            flag.rule,
            flag.request_count.to_string(),
            flag.first_seen.format("%Y-%m-%d %H:%M:%S").to_string(),
            flag.last_seen.format("%Y-%m-%d %H:%M:%S").to_string(),
            flag.reason,
        ]);
    }
    say!("{table}");
    Ok(())
}
