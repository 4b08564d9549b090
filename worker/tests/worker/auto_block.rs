//! Automatic blocking of flagged addresses, through the blocklist service.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use iptrack_core::{
    blocklist::{
        BlockSource, BlocklistChange, change_channel, parse_block_target,
        service::{BlockMode, BlockRequest, BlocklistService},
    },
    jobs::FlagSuspiciousIps,
    queue,
    settings::DetectSettings,
};
use iptrack_entity::blocked_ip;
use iptrack_tests::{TestDb, TestRedis, both_backends};
use iptrack_worker::{
    bans::Bans,
    jobs::flag_suspicious_ips::{FlaggedAddress, block_flagged},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

/// The next `n` blocklist notices on `stream`, decoded.
async fn next_notices(
    stream: &mut (impl futures::Stream<Item = redis::Msg> + Unpin),
    n: usize,
) -> Vec<BlocklistChange> {
    let mut changes = Vec::new();
    for _ in 0..n {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("no notice within 5 s")
            .expect("subscription ended");
        changes.push(serde_json::from_slice(message.get_payload_bytes()).unwrap());
    }
    changes
}

both_backends!(
    flagged_addresses_are_blocked_for_a_while_and_announced_as_stored,
    |backend| async move {
        let (db, redis) = (TestDb::new(backend).await, TestRedis::new());
        let conn = db.connect().await;
        let service = BlocklistService::new(
            conn.clone(),
            queue::connect(&redis.url).unwrap(),
            redis.prefix.clone(),
            &["198.51.100.0/28".parse().unwrap()],
        );
        let bans = Bans::new(
            conn.clone(),
            service.clone(),
            &DetectSettings::default(),
            &[],
        );
        let job = FlagSuspiciousIps::ending_at(Utc::now(), Duration::from_secs(3600)).unwrap();
        let client = redis::Client::open(redis.url.as_str()).unwrap();
        let mut notices = client.get_async_pubsub().await.unwrap();
        notices
            .subscribe(change_channel(&redis.prefix))
            .await
            .unwrap();
        let mut notices = notices.into_on_message();

        // A manual, permanent block must survive an automatic one ...
        service
            .block(BlockRequest {
                network: parse_block_target("203.0.113.1").unwrap(),
                reason: "manual".into(),
                expires_at: None,
                allow_wide: false,
                mode: BlockMode::Replace,
                source: BlockSource::Manual,
            })
            .await
            .unwrap();
        assert_eq!(next_notices(&mut notices, 1).await.len(), 1);

        // ... and a safelisted address is skipped without failing the others.
        let flagged = [
            ("203.0.113.1", "volume"),
            ("198.51.100.3", "volume"),
            ("2001:db8::2", "sensitive-path"),
        ]
        .map(|(address, rule)| FlaggedAddress {
            address: address.to_owned(),
            rule: rule.to_owned(),
            reason: "test".to_owned(),
            requests: 1,
        });
        let made = block_flagged(&bans, &flagged, Duration::from_secs(600), &job)
            .await
            .unwrap();
        // Only the block that took effect is a ban: not the one the manual block kept
        // out, nor the safelisted one.
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].flagged.address, "2001:db8::2");

        let manual = blocked_ip::Entity::find()
            .filter(blocked_ip::Column::IpAddress.eq("203.0.113.1"))
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (manual.reason.as_str(), manual.expires_at),
            ("manual", None)
        );
        let auto = blocked_ip::Entity::find()
            .filter(blocked_ip::Column::IpAddress.eq("2001:db8::2"))
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        let remaining = auto.expires_at.unwrap() - Utc::now();
        assert!(
            remaining > chrono::Duration::seconds(590)
                && remaining <= chrono::Duration::seconds(600)
        );
        assert_eq!(db.count(&conn, "blocked_ip").await, 2);
        // The source is the rule that flagged the address.
        assert_eq!(auto.source, "rule:sensitive-path");
        assert_eq!(Some(made[0].expires_at), auto.expires_at);

        // The notices say what the table holds: the permanent block stays permanent for
        // the web instances too, not "expires in 600 s" as the automatic block asked.
        let changes = next_notices(&mut notices, 2).await;
        assert_eq!(
            changes[0],
            BlocklistChange::Block {
                network: parse_block_target("203.0.113.1").unwrap(),
                expires_at: None,
            }
        );
        assert_eq!(
            changes[1],
            BlocklistChange::Block {
                network: parse_block_target("2001:db8::2").unwrap(),
                expires_at: auto.expires_at,
            }
        );

        // Running it again (the job re-run for the same window) adds no rows.
        block_flagged(&bans, &flagged, Duration::from_secs(600), &job)
            .await
            .unwrap();
        assert_eq!(db.count(&conn, "blocked_ip").await, 2);
        // One ban remembered (the safelisted and the manual one were none), not one a run.
        assert_eq!(
            db.count(&conn, "ban_history WHERE ip_address = '2001:db8::2'")
                .await,
            1
        );
        assert_eq!(db.count(&conn, "ban_history").await, 1);
        let changes = next_notices(&mut notices, 2).await;
        assert!(matches!(
            changes[0],
            BlocklistChange::Block {
                expires_at: None,
                ..
            }
        ));
    }
);
