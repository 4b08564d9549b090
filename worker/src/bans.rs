//! Automatic bans: how long, written through the blocklist service, remembered.
//!
//! Both the streaming rules (`crate::detect`) and the hourly job's auto-block ban through
//! [`Bans::ban`], so escalation sees every automatic ban of an address:
//! 1. the event already banned (its `event_key` is in `ban_history`: a job run again) →
//!    the same ban is applied again, nothing is recorded twice;
//! 2. otherwise the address's latest ban within `IPTRACK_BAN_MEMORY` makes this one
//!    `IPTRACK_BAN_ESCALATION` times as long, capped at `IPTRACK_BAN_MAX` (never shorter
//!    than the rule's own ban);
//! 3. the block is written in `Extend` mode with source `rule:NAME`: a longer block stays,
//!    a manual block is never touched, the safelist refuses;
//! 4. only a ban that took effect (the stored block ends when this ban does) is recorded
//!    in `ban_history`. An address already blocked for longer is not banned again, so
//!    its history does not grow while it sits out a ban.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SubsecRound, Utc};
use ipnet::IpNet;
use iptrack_core::{
    blocklist::{
        BlockSource, canonical_network, display_network,
        service::{BlockError, BlockMode, BlockRequest, BlocklistService},
    },
    settings::DetectSettings,
};
use iptrack_entity::ban_history;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    sea_query::OnConflict,
};

/// Bans addresses with escalation (see the module documentation).
#[derive(Debug, Clone)]
pub struct Bans {
    db: DatabaseConnection,
    blocklist: BlocklistService,
    escalation: f64,
    max: Duration,
    memory: Duration,
    /// `IPTRACK_TRUSTED_PROXIES`: never banned automatically. A proxy's own address is the
    /// client only of requests whose forwarding headers were malformed; banning it would
    /// refuse everyone whose headers an attacker can make malformed through it.
    proxies: Vec<IpNet>,
}

/// One ban to make.
#[derive(Debug, Clone)]
pub struct BanRequest {
    pub network: IpNet,
    /// The rule that fired: a streaming rule's name, or `flag-suspicious-ips`.
    pub rule: String,
    /// The rule's own ban, before escalation.
    pub base: Duration,
    pub reason: String,
    /// Names the event, so the ban is made once however often its job runs.
    pub event_key: String,
}

/// What a ban did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanOutcome {
    /// Blocked until `expires_at`; `bans` counts this one.
    Banned {
        expires_at: DateTime<Utc>,
        duration: Duration,
        bans: u64,
        /// `false` when this event's ban was made before (a job run again).
        new: bool,
    },
    /// A longer or manual block was already there and stays as it is.
    AlreadyBlocked,
    /// The policy refused (a safelisted address), or the address is a trusted proxy:
    /// never banned automatically.
    Refused(String),
}

impl Bans {
    /// `proxies` is `IPTRACK_TRUSTED_PROXIES` (never banned, see [`Bans`]).
    pub fn new(
        db: DatabaseConnection,
        blocklist: BlocklistService,
        settings: &DetectSettings,
        proxies: &[IpNet],
    ) -> Self {
        Self {
            db,
            blocklist,
            escalation: settings.ban_escalation,
            max: settings.ban_max,
            memory: settings.ban_memory,
            proxies: proxies.to_vec(),
        }
    }

    pub async fn ban(&self, request: BanRequest) -> anyhow::Result<BanOutcome> {
        if let Some(proxy) = self
            .proxies
            .iter()
            .find(|proxy| proxy.contains(&request.network) || request.network.contains(*proxy))
        {
            return Ok(BanOutcome::Refused(format!(
                "{} overlaps the trusted proxy {proxy} (IPTRACK_TRUSTED_PROXIES)",
                request.network
            )));
        }
        // Whole microseconds, as both databases store them: the expiry reported (and sent
        // in the ban's notice) is then exactly the one in the table.
        let now = Utc::now().trunc_subsecs(6);
        let address = display_network(&canonical_network(request.network.trunc()));
        let replay = ban_history::Entity::find()
            .filter(ban_history::Column::EventKey.eq(&request.event_key))
            .one(&self.db)
            .await
            .context("cannot read ban_history")?;
        let (expires_at, duration) = match &replay {
            Some(done) => (
                done.expires_at,
                Duration::from_secs(u64::try_from(done.duration_secs).unwrap_or(0)),
            ),
            None => {
                let previous = ban_history::Entity::find()
                    .filter(ban_history::Column::IpAddress.eq(&address))
                    .filter(
                        ban_history::Column::BannedAt
                            .gte(now - chrono::Duration::from_std(self.memory)?),
                    )
                    .order_by_desc(ban_history::Column::BannedAt)
                    .one(&self.db)
                    .await
                    .context("cannot read ban_history")?;
                let previous = previous
                    .map(|row| Duration::from_secs(u64::try_from(row.duration_secs).unwrap_or(0)));
                let duration = escalated(request.base, previous, self.escalation, self.max);
                (now + chrono::Duration::from_std(duration)?, duration)
            }
        };
        let source = BlockSource::Rule(request.rule.clone());
        let blocked = match self
            .blocklist
            .block(BlockRequest {
                network: request.network,
                reason: request.reason.clone(),
                expires_at: Some(expires_at),
                allow_wide: false,
                mode: BlockMode::Extend,
                source: source.clone(),
            })
            .await
        {
            Ok(blocked) => blocked,
            Err(BlockError::Refused(refusal)) => {
                return Ok(BanOutcome::Refused(refusal.to_string()));
            }
            Err(error) => return Err(error).context("cannot block"),
        };
        // The web instances' periodic reload covers a notice that does not get through.
        if let Err(error) = &blocked.notice {
            tracing::warn!(%error, address, "banned, but the change notice failed");
        }
        // Ours is in force when the stored block ends when ours does (the database may keep
        // fewer sub-second digits) and is ours; otherwise a longer or manual block won.
        let ours = blocked.block.source == source.stored()
            && blocked
                .block
                .expires_at
                .is_some_and(|stored| (stored - expires_at).num_milliseconds().abs() < 1);
        if replay.is_none() {
            if !ours {
                return Ok(BanOutcome::AlreadyBlocked);
            }
            ban_history::Entity::insert(ban_history::ActiveModel {
                id: NotSet,
                ip_address: Set(address.clone()),
                rule: Set(request.rule.clone()),
                banned_at: Set(now),
                duration_secs: Set(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)),
                expires_at: Set(expires_at),
                event_key: Set(Some(request.event_key.clone())),
            })
            .on_conflict(
                OnConflict::column(ban_history::Column::EventKey)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .context("cannot write ban_history")?;
        }
        let bans = ban_history::Entity::find()
            .filter(ban_history::Column::IpAddress.eq(&address))
            .count(&self.db)
            .await
            .context("cannot count bans")?;
        Ok(BanOutcome::Banned {
            expires_at,
            duration,
            bans,
            new: replay.is_none(),
        })
    }
}

/// How long a ban of `base` lasts after a previous one of `previous`: `factor` × the
/// previous ban, capped at `max`, never shorter than `base`; `factor` 1 means no
/// escalation (every ban is the rule's own).
pub fn escalated(
    base: Duration,
    previous: Option<Duration>,
    factor: f64,
    max: Duration,
) -> Duration {
    let Some(previous) = previous.filter(|_| factor > 1.0) else {
        return base;
    };
    // f64 seconds are exact far beyond any bound the settings allow (30 days, factor 100).
    let grown = Duration::from_secs_f64((previous.as_secs_f64() * factor).min(max.as_secs_f64()));
    // Whole seconds, as bans are written and shown.
    Duration::from_secs(grown.as_secs()).max(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_ban_grows_by_the_factor_up_to_the_cap_and_never_below_the_rule() {
        for (factor, max, base, previous, expected) in [
            (2.0, 86_400, 600, None, 600),
            (2.0, 86_400, 600, Some(600), 1_200),
            (2.0, 86_400, 600, Some(1_200), 2_400),
            (2.0, 3_000, 600, Some(2_400), 3_000),
            (1.0, 86_400, 600, Some(2_400), 600),
            (2.0, 86_400, 3_600, Some(60), 3_600),
            (2.0, 600, 3_600, Some(3_600), 3_600),
            (1.5, 86_400, 10, Some(10), 15),
            (
                100.0,
                30 * 86_400,
                30 * 86_400,
                Some(30 * 86_400),
                30 * 86_400,
            ),
        ] {
            let secs = |s: u64| Duration::from_secs(s);
            assert_eq!(
                escalated(secs(base), previous.map(secs), factor, secs(max)),
                secs(expected),
                "factor {factor}, max {max}, base {base}, previous {previous:?}"
            );
        }
    }
}
