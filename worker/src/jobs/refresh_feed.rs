//! `blocklist-feeds`: refresh one feed of `IPTRACK_BLOCKLIST_FEEDS`. Fetch its list
//! (bounded, `crate::feeds`), parse it (`iptrack_core::blocklist::feed`), and make it the
//! whole of the feed's entries through the blocklist service, which adds, withdraws and
//! tells the web instances to reload once.
//!
//! A refresh never empties a feed by accident. A failed fetch (connection, timeout, not
//! 200, too large) changes nothing and is retried by apalis with back-off; a list that is
//! refused changes nothing and waits for the next interval: a line that is not an address
//! (an HTML error page served with 200, a download cut mid-line), no entries at all (an
//! empty 200), or fewer than half of the feed's current entries (a download cut at a line
//! boundary). The operator accepts a list that really shrank with
//! `iptrack import-blocklist --allow-shrink` (README, "Blocklist feeds").

use apalis::prelude::{BoxDynError, Data};
use iptrack_core::{
    blocklist::{
        feed::{FeedListError, FeedName, FeedNameError, parse_list},
        service::{FeedImportError, FeedImportRequest, FeedImported},
    },
    jobs::{BLOCKLIST_FEEDS_QUEUE, RefreshBlocklistFeed},
    settings::{check_feed_url, redact_url},
};

use crate::{context::JobContext, feeds::FetchError};

/// Why a refresh changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The payload crossed Redis; a name or URL no setting could hold is refused.
    #[error(transparent)]
    BadName(#[from] FeedNameError),
    #[error("feed URL refused: {0}")]
    BadUrl(String),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    List(#[from] FeedListError),
    #[error(transparent)]
    Import(#[from] FeedImportError),
}

impl RefreshError {
    /// Whether apalis should try again soon: a transport failure or a database error may
    /// pass; a refused list or payload will be the same until the feed changes.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Fetch(FetchError::Transport { .. } | FetchError::Status { .. })
                | Self::Import(FeedImportError::Database(_))
        )
    }
}

/// The apalis handler: the job, timed and counted in the cluster-wide job metrics.
pub async fn handle(job: RefreshBlocklistFeed, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let started = std::time::Instant::now();
    let result = refresh(&ctx, &job).await;
    super::record_outcome(&ctx, BLOCKLIST_FEEDS_QUEUE, started, result.is_ok()).await;
    match result {
        Ok(done) => {
            tracing::info!(
                feed = %job.source,
                entries = done.entries,
                added = done.added,
                withdrawn = done.withdrawn,
                kept = done.kept,
                skipped = done.skipped.len(),
                "blocklist feed refreshed"
            );
            if let Err(error) = done.notice {
                tracing::warn!(%error, feed = %job.source, "feed refreshed, but the reload notice failed; web instances reload it periodically");
            }
            Ok(())
        }
        Err(error) if error.is_transient() => {
            tracing::warn!(feed = %job.source, "blocklist feed not refreshed, retried later; its entries stay: {error:#}");
            Err(error.into())
        }
        Err(error) => {
            // Not retried: the same list would be refused again. The next interval
            // fetches afresh.
            tracing::warn!(feed = %job.source, "blocklist feed list refused; its entries stay as they were: {error:#}");
            Ok(())
        }
    }
}

/// Fetches, parses and imports; nothing changes unless every step succeeds.
pub async fn refresh(
    ctx: &JobContext,
    job: &RefreshBlocklistFeed,
) -> Result<FeedImported, RefreshError> {
    let feed = FeedName::parse(&job.source)?;
    check_feed_url(&job.url).map_err(RefreshError::BadUrl)?;
    let body = ctx.feeds.fetch(&job.url).await?;
    let list = parse_list(&body)?;
    Ok(ctx
        .blocklist
        .import_feed(FeedImportRequest {
            feed,
            entries: list.entries,
            origin: redact_url(&job.url),
            allow_empty: false,
            allow_shrink: false,
        })
        .await?)
}
