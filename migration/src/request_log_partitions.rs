//! `request_log` on PostgreSQL is partitioned by range of `timestamp` (migration
//! `m20261202_000010_partition_request_log`): one table per period (a UTC day unless
//! `IPTRACK_LOG_PARTITION` says otherwise), plus a DEFAULT partition that takes any row no
//! period table covers, so a batch with an odd timestamp is never refused (and retried
//! forever). Retention drops whole partitions instead of deleting their rows one by one.
//!
//! Everything that makes or reads partitions lives here, shared by the migration, the
//! `purge-logs` job (which creates partitions ahead and drops old ones) and the benchmarks.
//! SQLite's `request_log` stays one table; nothing here runs there.
//!
//! Partition names are `request_log_p` + the first day's date (`request_log_p20261202`),
//! made only from a `chrono` date; bounds are written from `chrono` values too, so no text
//! from outside reaches this DDL. Partitions created by someone else (other names) are
//! respected, never dropped.

use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use chrono::{DateTime, NaiveDate, Utc};

/// The partition of rows no other partition covers.
pub const DEFAULT_PARTITION: &str = "request_log_default";

/// Partitions iptrack makes are named this plus their first day, `YYYYMMDD`.
pub const PARTITION_PREFIX: &str = "request_log_p";

/// How far ahead of today partitions are made (by the migration and by every
/// `purge-logs` run): a week, so a daily purge that fails for a few days in a row still
/// finds tomorrow's partition there. Rows past the horizon go to the DEFAULT partition and
/// move out when their partition is made.
pub const PREMAKE_DAYS: i64 = 7;

/// One partition of `request_log` and its range `[start, end)`; `None` is an open end
/// (`MINVALUE`/`MAXVALUE`, only in partitions made by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl Partition {
    /// Whether `at` falls in this partition's range.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start.is_none_or(|start| start <= at) && self.end.is_none_or(|end| at < end)
    }

    /// Whether iptrack made it (and so may drop it when it is past the retention).
    pub fn is_managed(&self) -> bool {
        self.name
            .strip_prefix(PARTITION_PREFIX)
            .is_some_and(|date| NaiveDate::parse_from_str(date, "%Y%m%d").is_ok())
    }
}

/// A partition made by [`cover`], with the rows it took over from the DEFAULT partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub name: String,
    pub moved_rows: u64,
}

/// The name of the partition that starts at `start`.
pub fn partition_name(start: DateTime<Utc>) -> String {
    format!("{PARTITION_PREFIX}{}", start.format("%Y%m%d"))
}

/// Midnight UTC of `day`.
pub fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// A `timestamptz` literal of `at`, from chrono's own formatting (no outside text).
fn literal(at: DateTime<Utc>) -> String {
    format!("'{}'", at.format("%Y-%m-%d %H:%M:%S%.6f+00"))
}

fn statement(sql: impl Into<String>) -> Statement {
    Statement::from_string(DbBackend::Postgres, sql)
}

/// Whether `request_log` is a partitioned table (false on SQLite, and on PostgreSQL
/// before the migration).
pub async fn is_partitioned<C: ConnectionTrait>(db: &C) -> Result<bool, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(false);
    }
    let row = db
        .query_one_raw(statement(
            "SELECT relkind::text = 'p' AS partitioned FROM pg_class \
             WHERE oid = to_regclass('request_log')",
        ))
        .await?;
    match row {
        Some(row) => row.try_get("", "partitioned"),
        None => Ok(false),
    }
}

/// The partitions of `request_log` (without the DEFAULT one), oldest first.
///
/// The bounds come back from `pg_get_expr` in the session's time zone and are cast back in
/// the same session, so they are exact whatever that zone is.
pub async fn list<C: ConnectionTrait>(db: &C) -> Result<Vec<Partition>, DbErr> {
    let rows = db
        .query_all_raw(statement(
            "SELECT name, \
                    (regexp_match(bound, 'FROM \\(''([^'']*)''\\)'))[1]::timestamptz AS start_at, \
                    (regexp_match(bound, 'TO \\(''([^'']*)''\\)'))[1]::timestamptz AS end_at \
             FROM (SELECT c.relname::text AS name, pg_get_expr(c.relpartbound, c.oid) AS bound \
                   FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                   WHERE i.inhparent = 'request_log'::regclass) p \
             WHERE bound <> 'DEFAULT' \
             ORDER BY start_at NULLS FIRST, name",
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Partition {
                name: row.try_get("", "name")?,
                start: row.try_get("", "start_at")?,
                end: row.try_get("", "end_at")?,
            })
        })
        .collect()
}

/// Makes the partition `[start, end)`, taking over the rows the DEFAULT partition holds in
/// that range (PostgreSQL refuses a new partition while the DEFAULT one holds rows of its
/// range). Returns the rows moved.
///
/// The table is made apart, filled, then attached: attaching builds the parent's indexes
/// on it and checks the DEFAULT partition, whose inserts the caller holds off (see
/// [`lock_for_create`]) so no row of the range can slip in between.
pub async fn create<C: ConnectionTrait>(
    db: &C,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let name = partition_name(start);
    let (from, to) = (literal(start), literal(end));
    db.execute_unprepared(&format!(
        "CREATE TABLE {name} (LIKE request_log INCLUDING DEFAULTS)"
    ))
    .await?;
    let moved = db
        .execute_unprepared(&format!(
            "WITH moved AS (DELETE FROM {DEFAULT_PARTITION} \
                            WHERE timestamp >= {from} AND timestamp < {to} RETURNING *) \
             INSERT INTO {name} SELECT * FROM moved"
        ))
        .await?
        .rows_affected();
    db.execute_unprepared(&format!(
        "ALTER TABLE request_log ATTACH PARTITION {name} FOR VALUES FROM ({from}) TO ({to})"
    ))
    .await?;
    Ok(moved)
}

/// The locks [`create`] needs, taken up front in a fixed order (parent, then DEFAULT) so
/// that concurrent ingest cannot deadlock with it: the parent in SHARE UPDATE EXCLUSIVE
/// (what ATTACH takes; reads and inserts go on), the DEFAULT partition in EXCLUSIVE (its
/// reads go on, inserts routed to it wait until the commit).
pub async fn lock_for_create<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    db.execute_unprepared(&format!(
        "LOCK TABLE request_log IN SHARE UPDATE EXCLUSIVE MODE; \
         LOCK TABLE {DEFAULT_PARTITION} IN EXCLUSIVE MODE"
    ))
    .await
    .map(|_| ())
}

/// Makes the partitions that cover `[from, until)` where none exists yet, each from a
/// period's start to `next_start` of it (the start of the period after), cut short where
/// an existing partition begins. Call it in a transaction, after [`lock_for_create`].
pub async fn cover<C: ConnectionTrait>(
    db: &C,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    next_start: impl Fn(NaiveDate) -> NaiveDate,
) -> Result<Vec<Created>, DbErr> {
    let existing = list(db).await?;
    let mut created = Vec::new();
    let mut at = from;
    while at < until {
        if let Some(partition) = existing.iter().find(|p| p.contains(at)) {
            match partition.end {
                Some(end) => {
                    at = end;
                    continue;
                }
                None => break,
            }
        }
        let mut end = midnight(next_start(at.date_naive()));
        if let Some(next) = existing
            .iter()
            .filter_map(|p| p.start)
            .filter(|s| *s > at)
            .min()
        {
            end = end.min(next);
        }
        if end <= at {
            // `next_start` must move forward; a partition of at least a day otherwise.
            end = midnight(at.date_naive() + chrono::Duration::days(1));
        }
        let moved_rows = create(db, at, end).await?;
        created.push(Created {
            name: partition_name(at),
            moved_rows,
        });
        at = end;
    }
    Ok(created)
}

/// Converts the plain `request_log` into the partitioned one, in the caller's transaction:
/// same columns and defaults, ids continuing where the old sequence was, primary key
/// `(id, timestamp)` (the partition key must be in it), the same three indexes, a daily
/// partition for every day from the oldest row's to [`PREMAKE_DAYS`] after `now`, and the
/// DEFAULT partition (which takes rows past that, e.g. clock-skewed future timestamps).
pub async fn partition<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<(), DbErr> {
    // Writers wait for the whole conversion instead of writing to a table about to go.
    db.execute_unprepared("LOCK TABLE request_log IN ACCESS EXCLUSIVE MODE")
        .await?;
    set_aside(db, "request_log_unpartitioned").await?;
    db.execute_unprepared(
        "CREATE TABLE request_log (LIKE request_log_unpartitioned \
                                   INCLUDING DEFAULTS INCLUDING IDENTITY) \
         PARTITION BY RANGE (timestamp); \
         ALTER TABLE request_log ADD PRIMARY KEY (id, timestamp)",
    )
    .await?;
    db.execute_unprepared(&format!(
        "CREATE TABLE {DEFAULT_PARTITION} PARTITION OF request_log DEFAULT"
    ))
    .await?;
    let oldest = db
        .query_one_raw(statement(
            "SELECT min(timestamp) AS oldest FROM request_log_unpartitioned",
        ))
        .await?
        .map(|row| row.try_get::<Option<DateTime<Utc>>>("", "oldest"))
        .transpose()?
        .flatten();
    let today = midnight(now.date_naive());
    let from = oldest.map_or(today, |oldest| midnight(oldest.date_naive()).min(today));
    let until = today + chrono::Duration::days(PREMAKE_DAYS + 1);
    // The days that hold rows, and today and the days ahead whether or not they do.
    let mut days: std::collections::BTreeSet<DateTime<Utc>> =
        distinct_days(db, from, until).await?.into_iter().collect();
    days.extend(
        std::iter::successors(Some(today), |d| Some(*d + chrono::Duration::days(1)))
            .take_while(|d| *d < until),
    );
    for day in days {
        create(db, day, day + chrono::Duration::days(1)).await?;
    }
    finish_swap(db, "request_log_unpartitioned").await
}

/// The UTC days in `[from, until)` that hold rows of `request_log_unpartitioned`.
async fn distinct_days<C: ConnectionTrait>(
    db: &C,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT DISTINCT date_trunc('day', timestamp, 'UTC') AS day \
             FROM request_log_unpartitioned WHERE timestamp >= $1 AND timestamp < $2 \
             ORDER BY day",
            [from.into(), until.into()],
        ))
        .await?;
    rows.iter().map(|row| row.try_get("", "day")).collect()
}

/// Converts the partitioned `request_log` back into one plain table (primary key `id`),
/// rows, ids and indexes kept, in the caller's transaction.
pub async fn unpartition<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    db.execute_unprepared("LOCK TABLE request_log IN ACCESS EXCLUSIVE MODE")
        .await?;
    set_aside(db, "request_log_partitioned").await?;
    db.execute_unprepared(
        "CREATE TABLE request_log (LIKE request_log_partitioned \
                                   INCLUDING DEFAULTS INCLUDING IDENTITY); \
         ALTER TABLE request_log ADD PRIMARY KEY (id)",
    )
    .await?;
    finish_swap(db, "request_log_partitioned").await
}

/// The three indexes of `request_log` (migrations 000001 and 000008), dropped from the
/// table set aside and made on the new one (index names are unique in a schema).
const INDEXES: [(&str, &str); 3] = [
    ("idx_request_log_timestamp", "timestamp"),
    ("idx_request_log_ip_timestamp", "ip_address, timestamp"),
    ("idx_request_log_timestamp_status", "timestamp, status"),
];

/// Renames `request_log` (with its primary key and id sequence, whose names the new table
/// takes) to `aside`, and drops its indexes.
async fn set_aside<C: ConnectionTrait>(db: &C, aside: &str) -> Result<(), DbErr> {
    db.execute_unprepared(&format!(
        "ALTER TABLE request_log RENAME TO {aside}; \
         ALTER TABLE {aside} RENAME CONSTRAINT request_log_pkey TO {aside}_pkey; \
         ALTER SEQUENCE request_log_id_seq RENAME TO {aside}_id_seq"
    ))
    .await?;
    for (index, _) in INDEXES {
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {index}"))
            .await?;
    }
    Ok(())
}

/// Moves the rows of `aside` into the new `request_log`, builds its indexes after (faster
/// than row by row), continues its ids after the old ones and drops `aside`.
async fn finish_swap<C: ConnectionTrait>(db: &C, aside: &str) -> Result<(), DbErr> {
    db.execute_unprepared(&format!(
        "INSERT INTO request_log OVERRIDING SYSTEM VALUE SELECT * FROM {aside}"
    ))
    .await?;
    for (index, columns) in INDEXES {
        db.execute_unprepared(&format!("CREATE INDEX {index} ON request_log ({columns})"))
            .await?;
    }
    // Past every id the old table handed out (rows deleted since included), so ids stay
    // unique and increasing: the API pages by id.
    db.execute_unprepared(&format!(
        "SELECT setval('request_log_id_seq', \
                       greatest((SELECT last_value FROM {aside}_id_seq), \
                                (SELECT coalesce(max(id), 0) FROM {aside}), 1), \
                       (SELECT is_called OR EXISTS (SELECT 1 FROM {aside}) \
                        FROM {aside}_id_seq))"
    ))
    .await?;
    db.execute_unprepared(&format!("DROP TABLE {aside}"))
        .await?;
    db.execute_unprepared("ANALYZE request_log").await?;
    Ok(())
}
