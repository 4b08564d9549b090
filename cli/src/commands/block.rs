//! `iptrack block`, `iptrack unblock`, `iptrack blocked`.
//!
//! The change goes to `blocked_ip` first (the source of truth), then is announced on Redis
//! so every web instance applies it at once. If Redis is away the change still holds: the
//! instances pick it up at their next periodic reload.

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use ipnet::IpNet;
use iptrack_core::{
    Settings,
    blocklist::{BlocklistChange, display_network, publish_change},
    queue,
};
use iptrack_entity::blocked_ip;

pub async fn block(
    settings: &Settings,
    target: IpNet,
    reason: Option<String>,
    duration: Option<Duration>,
) -> anyhow::Result<()> {
    let db = super::connect_db(settings).await?;
    let address = display_network(&target);
    let expires_at = match duration {
        Some(duration) => Some(Utc::now() + chrono::Duration::from_std(duration)?),
        None => None,
    };
    let reason = reason.unwrap_or_default();
    let inserted = blocked_ip::block(&db, &address, &reason, expires_at, false)
        .await
        .context("cannot write blocked_ip")?;
    announce(
        settings,
        BlocklistChange::Block {
            network: target,
            expires_at,
        },
    )
    .await;
    let until = match expires_at {
        Some(at) => format!("until {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
        None => "until unblocked".to_owned(),
    };
    let verb = if inserted {
        "blocked"
    } else {
        "updated the block of"
    };
    println!("{verb} {address} {until}");
    Ok(())
}

pub async fn unblock(settings: &Settings, target: IpNet) -> anyhow::Result<()> {
    let db = super::connect_db(settings).await?;
    let address = display_network(&target);
    if blocked_ip::unblock(&db, &address)
        .await
        .context("cannot write blocked_ip")?
    {
        announce(settings, BlocklistChange::Unblock { network: target }).await;
        println!("unblocked {address}");
    } else {
        println!("{address} is not blocked");
    }
    Ok(())
}

pub async fn list(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let db = super::connect_db(settings).await?;
    let blocks = blocked_ip::active(&db, Utc::now())
        .await
        .context("cannot read blocked_ip")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&blocks)?);
        return Ok(());
    }
    if blocks.is_empty() {
        println!("nothing is blocked");
        return Ok(());
    }
    let mut table = super::table(&["address", "reason", "created (UTC)", "expires (UTC)"]);
    for block in blocks {
        table.add_row(vec![
            block.ip_address,
            block.reason,
            block.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            block
                .expires_at
                .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "never".to_owned()),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// Tells the web instances; a failure is reported, not fatal (see the module comment).
async fn announce(settings: &Settings, change: BlocklistChange) {
    let published = match queue::connect(&settings.redis_url) {
        Ok(mut conn) => publish_change(&mut conn, &settings.redis_prefix, &change).await,
        Err(error) => Err(error),
    };
    if let Err(error) = published {
        eprintln!(
            "iptrack: warning: Redis unreachable ({error}); web instances apply the change at their next reload (within {} s)",
            settings.blocklist_reload.as_secs()
        );
    }
}
