//! `iptrack import-blocklist --source NAME FILE|URL`: make a list the whole of feed NAME's
//! blocks (`feed:NAME` in `blocked_ip.source`).
//!
//! The list is read whole and checked before anything changes: one line that is not an
//! address or network fails the import with status 2 naming the line. The blocklist
//! service then adds what is new and withdraws what the list no longer has in one
//! transaction, leaves every block of a person, a rule or another feed as it is, skips
//! (and reports) entries overlapping `IPTRACK_SAFELIST`, and tells the web instances to
//! reload once. README, "Blocklist feeds", has the rules; the same import runs for
//! `IPTRACK_BLOCKLIST_FEEDS` in the workers (`iptrack-worker`'s `refresh_feed` job).

use std::io::Read;

use crate::output::say;
use iptrack_core::{
    Settings,
    blocklist::{
        display_network,
        feed::{FeedListError, FeedName, MAX_LIST_BYTES, parse_list},
        service::FeedImportRequest,
    },
    settings::redact_url,
};
use iptrack_worker::feeds::FeedFetcher;

/// How many skipped entries are named one by one (the count covers all).
const SKIPPED_SHOWN: usize = 10;

/// A file that cannot be a list: missing, unreadable, or too large. The caller's input
/// (status 2).
#[derive(Debug, thiserror::Error)]
pub enum BadFile {
    /// The reader's message is part of this one (not a `source`, which the one-line
    /// message would repeat).
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        path: String,
        reason: std::io::Error,
    },
    #[error("{path} is larger than {MAX_LIST_BYTES} bytes; not a list iptrack imports")]
    TooLarge { path: String },
}

pub async fn run(
    settings: &Settings,
    feed: FeedName,
    list: &str,
    allow_empty: bool,
    allow_shrink: bool,
) -> anyhow::Result<()> {
    let is_url = ["http://", "https://"].iter().any(|scheme| {
        list.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    });
    let (body, origin) = if is_url {
        let fetcher = FeedFetcher::new(&settings.feeds)?;
        (fetcher.fetch(list).await?, redact_url(list))
    } else {
        (read_file(list)?, list.to_owned())
    };
    let parsed = parse_list(&body).map_err(|error| ListRefused {
        origin: origin.clone(),
        error,
    })?;
    let service = super::block::service(settings).await?;
    let imported = service
        .import_feed(FeedImportRequest {
            feed: feed.clone(),
            entries: parsed.entries,
            origin: origin.clone(),
            allow_empty,
            allow_shrink,
        })
        .await?;
    for (network, refusal) in imported.skipped.iter().take(SKIPPED_SHOWN) {
        eprintln!("iptrack: skipped {}: {refusal}", display_network(network));
    }
    if imported.skipped.len() > SKIPPED_SHOWN {
        eprintln!(
            "iptrack: … and {} more skipped",
            imported.skipped.len() - SKIPPED_SHOWN
        );
    }
    if imported.added + imported.withdrawn > 0 {
        super::block::warn_if_unannounced(settings, imported.notice);
    }
    say!(
        "feed {feed} from {origin}: {} entries; {} added, {} withdrawn, {} unchanged, {} kept (blocked by another source), {} skipped (safelisted)",
        imported.entries,
        imported.added,
        imported.withdrawn,
        imported.unchanged,
        imported.kept,
        imported.skipped.len(),
    );
    Ok(())
}

/// A list that does not parse, with where it came from.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {error}")]
pub struct ListRefused {
    origin: String,
    /// Part of the message, not its source: as a source, the one-line message would
    /// repeat it (`{:#}` prints the chain).
    pub error: FeedListError,
}

/// Reads at most `MAX_LIST_BYTES` (+1, to tell a file that is too large): the size in
/// the metadata is not trusted (a FIFO, `/dev/zero`, a file still growing).
fn read_file(path: &str) -> Result<Vec<u8>, BadFile> {
    let unreadable = |reason| BadFile::Unreadable {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut body = Vec::new();
    file.take(MAX_LIST_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(unreadable)?;
    if body.len() > MAX_LIST_BYTES {
        return Err(BadFile::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(body)
}
