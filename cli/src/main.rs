//! `iptrack`: the operator's command. Each subcommand lives in `commands/`.

use std::{path::PathBuf, process::ExitCode};

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use ipnet::IpNet;
use iptrack_core::{
    Settings,
    blocklist::{
        feed::FeedName,
        parse_block_target,
        service::{BlockError, FeedImportError},
    },
    jobs::WindowOutOfRange,
    telemetry,
};

mod commands;
mod output;

/// IP tracking for web services. Configuration comes from the environment (see README).
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// TOML file with the same keys as the environment variables (the environment wins).
    #[arg(long, global = true, env = "IPTRACK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Run web, worker and scheduler in one process (migrations applied first).
    Up,
    /// Block an address or network (IPv4 or IPv6); blocking it again updates it.
    Block {
        /// Address or CIDR network, e.g. 203.0.113.7, 2001:db8::/32.
        #[arg(value_parser = parse_target)]
        target: IpNet,
        /// Why, for the people who read the list later.
        #[arg(long)]
        reason: Option<String>,
        /// How long the block lasts (e.g. 30m, 12h, 7d); default until unblocked.
        #[arg(long = "for", value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
        /// Allow a network wider than an IPv4 /16 or an IPv6 /32 (everyone and safelisted
        /// addresses are refused even then).
        #[arg(long)]
        allow_wide: bool,
    },
    /// Remove the block of an address or network.
    Unblock {
        #[arg(value_parser = parse_target)]
        target: IpNet,
    },
    /// List the blocks in force, with who made each (manual, rule:NAME, feed:NAME).
    Blocked {
        /// Only the blocks of this source, e.g. manual, rule:volume, feed:firehol1.
        #[arg(long, value_parser = parse_source)]
        source: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a blocklist (one address or network a line, `#`/`;` comments: plain, FireHOL
    /// .netset/.ipset, Spamhaus DROP) the whole of feed NAME's blocks: adds what is new,
    /// withdraws what the list no longer has, never touches other sources' blocks.
    ImportBlocklist {
        /// The feed's name (lower-case letters, digits, '-'); its blocks are feed:NAME.
        #[arg(long, value_parser = parse_feed_name)]
        source: FeedName,
        /// A file, or an http:// or https:// URL.
        #[arg(value_name = "FILE|URL")]
        list: String,
        /// Accept a list with no entries, withdrawing all of the feed's blocks.
        #[arg(long)]
        allow_empty: bool,
        /// Accept a list with fewer than half of the feed's current entries.
        #[arg(long)]
        allow_shrink: bool,
    },
    /// Enqueue flag-suspicious-ips now for the window ending at --window-end.
    FlagSuspicious {
        /// End of the window (RFC 3339, e.g. 2026-11-21T10:00:00Z); default now.
        #[arg(long, value_parser = parse_time)]
        window_end: Option<DateTime<Utc>>,
    },
    /// List the most recently flagged addresses.
    Suspicious {
        /// How many flags to show.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        limit: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show each queue's due, scheduled, in-flight, done and dead jobs, and its workers.
    Queues {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Show the most recent logged requests, newest first (the filters of the admin API's
    /// /api/v1/logs, all of them together).
    Logs(commands::logs::LogsArgs),
}

/// An address as the log stores it (IPv4-mapped IPv6 as IPv4).
fn parse_ip(text: &str) -> Result<std::net::IpAddr, String> {
    text.parse::<std::net::IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| format!("{text:?} is not an IP address"))
}

fn parse_target(text: &str) -> Result<IpNet, String> {
    parse_block_target(text).map_err(|e| e.to_string())
}

fn parse_feed_name(text: &str) -> Result<FeedName, String> {
    FeedName::parse(text).map_err(|e| e.to_string())
}

/// A source as `blocked_ip.source` holds it: `manual`, `rule:NAME` or `feed:NAME`.
fn parse_source(text: &str) -> Result<String, String> {
    let valid = text == "manual"
        || ["rule:", "feed:"].iter().any(|prefix| {
            text.strip_prefix(prefix).is_some_and(|name| {
                !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            })
        });
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a source; expected manual, rule:NAME or feed:NAME"
        ))
    }
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!(
            "{text:?} is not a duration; expected e.g. 30m, 12h, 7d"
        )),
    }
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; expected RFC 3339, e.g. 2026-11-21T10:00:00Z"))
}

/// clap's error as one line that names the problem. Its first line alone is not enough:
/// a missing argument reads "the following required arguments were not provided:" with
/// the argument on the next line, and a missing subcommand prints the whole help. So the
/// first paragraph is joined, and the missing subcommand gets a sentence of its own.
fn one_line(error: &clap::Error) -> String {
    if error.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "a subcommand is required; see iptrack --help".to_owned();
    }
    let text = error.to_string();
    let paragraph: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect();
    paragraph.join(" ").trim_start_matches("error: ").to_owned()
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Malformed arguments: status 2 and one line (clap's own message adds usage lines).
        Err(error) if error.use_stderr() => {
            eprintln!("iptrack: {}", one_line(&error));
            return ExitCode::from(2);
        }
        Err(help_or_version) => help_or_version.exit(),
    };
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("iptrack: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    iptrack_core::redis_status::init(&settings.redis.url);
    let result = match cli.command {
        Command::Migrate => commands::migrate::run(&settings).await,
        Command::Up => commands::up::run(&settings).await,
        Command::Block {
            target,
            reason,
            duration,
            allow_wide,
        } => commands::block::block(&settings, target, reason, duration, allow_wide).await,
        Command::Unblock { target } => commands::block::unblock(&settings, target).await,
        Command::Blocked { source, json } => commands::block::list(&settings, source, json).await,
        Command::ImportBlocklist {
            source,
            list,
            allow_empty,
            allow_shrink,
        } => {
            commands::import_blocklist::run(&settings, source, &list, allow_empty, allow_shrink)
                .await
        }
        Command::FlagSuspicious { window_end } => {
            commands::flag_suspicious::run(&settings, window_end).await
        }
        Command::Suspicious { limit, json } => {
            commands::suspicious::run(&settings, limit, json).await
        }
        Command::Queues { json } => commands::queues::run(&settings, json).await,
        Command::Logs(args) => commands::logs::run(&settings, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // No Redis for `iptrack up`: a setting or an install to fix, one line.
        Err(error) if error.downcast_ref::<commands::up::NoRedis>().is_some() => {
            eprintln!("iptrack up: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("iptrack: {error:#}");
            if is_bad_input(&error) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Errors that are the caller's input, not a fault: status 2, like malformed arguments.
fn is_bad_input(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<BlockError>(),
        Some(BlockError::Refused(_))
    ) || matches!(
        error.downcast_ref::<FeedImportError>(),
        Some(FeedImportError::Refused(_))
    ) || matches!(
        error.downcast_ref::<iptrack_worker::feeds::FetchError>(),
        Some(iptrack_worker::feeds::FetchError::TooLarge { .. })
    ) || error.is::<WindowOutOfRange>()
        || error.is::<commands::import_blocklist::ListRefused>()
        || error.is::<commands::import_blocklist::BadFile>()
        || error.is::<commands::logs::BadRange>()
        || error.is::<iptrack_worker::feeds::FeedSetupError>()
        // `iptrack up` starts the workers: a geolocation database or a webhook client that
        // cannot be set up is a setting to fix, as it is for iptrack-worker.
        || error.is::<iptrack_worker::geo::GeoSetupError>()
        || error.is::<iptrack_worker::jobs::deliver_notice::WebhookSetupError>()
}
