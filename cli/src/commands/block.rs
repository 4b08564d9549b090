//! `iptrack block`, `iptrack unblock`, `iptrack blocked`.
//!
//! Changes go through the blocklist service (`iptrack_core::blocklist::service`): it refuses
//! blocks of everyone, of safelisted addresses and (without `--allow-wide`) of very wide
//! networks, writes `blocked_ip`, then announces the stored block on Redis so every web
//! instance applies it at once. If Redis is away the change still holds: the instances
//! pick it up at their next periodic reload.

use std::time::Duration;

use crate::output::say;
use anyhow::Context;
use chrono::Utc;
use ipnet::IpNet;
use iptrack_core::{
    Settings,
    blocklist::{
        BlockSource, display_network,
        service::{BlockMode, BlockRequest, BlocklistService},
    },
    queue,
};
use iptrack_entity::blocked_ip;

pub async fn block(
    settings: &Settings,
    target: IpNet,
    reason: Option<String>,
    duration: Option<Duration>,
    allow_wide: bool,
) -> anyhow::Result<()> {
    let expires_at = match duration {
        Some(duration) => Some(Utc::now() + chrono::Duration::from_std(duration)?),
        None => None,
    };
    let service = service(settings).await?;
    let blocked = service
        .block(BlockRequest {
            network: target,
            reason: reason.unwrap_or_default(),
            expires_at,
            allow_wide,
            mode: BlockMode::Replace,
            source: BlockSource::Manual,
        })
        .await?;
    warn_if_unannounced(settings, blocked.notice);
    let until = match blocked.block.expires_at {
        Some(at) => format!("until {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
        None => "until unblocked".to_owned(),
    };
    let verb = if blocked.created {
        "blocked"
    } else {
        "updated the block of"
    };
    say!("{verb} {} {until}", blocked.block.ip_address);
    Ok(())
}

pub async fn unblock(settings: &Settings, target: IpNet) -> anyhow::Result<()> {
    let address = display_network(&target);
    let unblocked = service(settings).await?.unblock(target).await?;
    if unblocked.removed {
        warn_if_unannounced(settings, unblocked.notice);
        say!("unblocked {address}");
    } else {
        say!("{address} is not blocked");
    }
    Ok(())
}

pub async fn list(settings: &Settings, source: Option<String>, json: bool) -> anyhow::Result<()> {
    let db = super::connect_db(settings).await?;
    let blocks = blocked_ip::active_listed(&db, Utc::now(), source.as_deref())
        .await
        .context("cannot read blocked_ip")?;
    if json {
        say!("{}", serde_json::to_string_pretty(&blocks)?);
        return Ok(());
    }
    if blocks.is_empty() {
        match source {
            Some(source) => say!("nothing is blocked by {source}"),
            None => say!("nothing is blocked"),
        }
        return Ok(());
    }
    let mut table = super::table(&[
        "address",
        "source",
        "bans",
        "reason",
        "created (UTC)",
        "expires (UTC)",
    ]);
    for block in blocks {
        table.add_row(vec![
            block.ip_address,
            block.source,
            block.ban_count.to_string(),
            block.reason,
            block.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            block
                .expires_at
                .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "never".to_owned()),
        ]);
    }
    say!("{table}");
    Ok(())
}

pub(crate) async fn service(settings: &Settings) -> anyhow::Result<BlocklistService> {
    let db = super::connect_db(settings).await?;
    let redis = queue::connect_to(&settings.redis).context("REDIS_URL")?;
    Ok(BlocklistService::new(
        db,
        redis,
        settings.redis.prefix.clone(),
        &settings.blocklist.safelist,
    ))
}

/// A lost notice is reported, not fatal (see the module comment).
pub(crate) fn warn_if_unannounced(settings: &Settings, notice: Result<(), impl std::fmt::Display>) {
    if let Err(error) = notice {
        eprintln!(
            "iptrack: warning: Redis unreachable ({error}); web instances apply the change at their next reload (within {} s)",
            settings.blocklist.reload.as_secs()
        );
    }
}
