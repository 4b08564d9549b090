//! Shared helpers of the benchmark binaries in `src/bin/`.

/// Median of `values` (which it sorts); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// A small deterministic pseudo-random generator (xorshift64*), so every run measures the
/// same data without a dependency.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// Resident memory of this process in bytes (Linux), for before/after comparisons.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Resident memory of process `pid` in MiB (Linux `VmRSS`); 0 when it cannot be read.
pub fn process_resident_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The end of the synthetic request log the large-table benchmarks fill:
/// 2026-11-21T10:00:00Z; rows spread over the 30 days before it.
pub const FILL_END_EPOCH: i64 = 1_795_255_200;
const FILL_SPREAD_SECS: i64 = 30 * 86_400;

/// Fills `request_log` with `rows` synthetic GET requests in one SQL statement (no client
/// round trips): 5 % of them from five busy `198.51.100.x` addresses, the rest spread over
/// `10.0.0.0/8`, timestamps spread over 30 days before [`FILL_END_EPOCH`]. `columns` are
/// (column, SQL expression over the row number `g`) pairs, always including `path` and
/// `status`; `chr(` is rewritten to SQLite's `char(`. Then `ANALYZE`.
#[allow(clippy::expect_used)] // A benchmark stops at a database error.
pub async fn fill_request_log(
    conn: &sea_orm::DatabaseConnection,
    backend: iptrack_tests::Backend,
    rows: u64,
    columns: &[(&str, &str)],
) {
    use sea_orm::ConnectionTrait;
    let ip = "CASE WHEN g % 20 = 0 THEN '198.51.100.' || (g % 100 / 20) \
              ELSE '10.' || ((g * 7919) % 256) || '.' || ((g * 104729) % 256) || '.' || ((g * 15485863) % 256) END";
    let offset = format!("((g * 2654435761) % {FILL_SPREAD_SECS})");
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let names = names.join(", ");
    let values = |rewrite: fn(&str) -> String| -> String {
        columns
            .iter()
            .map(|(_, expr)| rewrite(expr))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = match backend {
        iptrack_tests::Backend::Postgres => format!(
            "INSERT INTO request_log (ip_address, timestamp, method, {names}) \
             SELECT {ip}, to_timestamp({FILL_END_EPOCH} - {offset}), 'GET', {} \
             FROM generate_series(1::bigint, {rows}::bigint) AS g",
            values(str::to_owned)
        ),
        iptrack_tests::Backend::Sqlite => format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {rows}) \
             INSERT INTO request_log (ip_address, timestamp, method, {names}) \
             SELECT {ip}, strftime('%Y-%m-%dT%H:%M:%S+00:00', {FILL_END_EPOCH} - {offset}, 'unixepoch'), \
                    'GET', {} FROM s",
            values(|expr| expr.replace("chr(", "char("))
        ),
    };
    conn.execute_unprepared(&sql).await.expect("fill failed");
    conn.execute_unprepared("ANALYZE")
        .await
        .expect("analyze failed");
}

/// The database's plan for `query`: `EXPLAIN (ANALYZE, BUFFERS)` on PostgreSQL,
/// `EXPLAIN QUERY PLAN` on SQLite, one line per plan row.
#[allow(clippy::expect_used)] // A benchmark stops at a database error.
pub async fn plan(
    conn: &sea_orm::DatabaseConnection,
    backend: iptrack_tests::Backend,
    query: sea_orm::Statement,
) -> String {
    use sea_orm::ConnectionTrait;
    let (prefix, column) = match backend {
        iptrack_tests::Backend::Postgres => ("EXPLAIN (ANALYZE, BUFFERS) ", None),
        iptrack_tests::Backend::Sqlite => ("EXPLAIN QUERY PLAN ", Some("detail")),
    };
    let explain = sea_orm::Statement {
        sql: format!("{prefix}{}", query.sql),
        ..query
    };
    let rows = conn.query_all_raw(explain).await.expect("explain failed");
    rows.iter()
        .map(|row| match column {
            Some(name) => row.try_get::<String>("", name).expect("plan row"),
            None => row.try_get_by_index::<String>(0).expect("plan row"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads one HTTP/1.1 response (headers, then `Content-Length` bytes) on a benchmark's
/// keep-alive connection; returns its status and whether the server closes the connection
/// after it. A closed connection or an unreadable head is an error.
pub fn read_response(
    stream: &mut std::net::TcpStream,
    buffer: &mut [u8],
) -> std::io::Result<(u16, bool)> {
    use std::io::{Error, ErrorKind, Read};
    /// Reads more into `buffer` after `filled`; a closed connection is an error.
    fn read_more(
        stream: &mut std::net::TcpStream,
        buffer: &mut [u8],
        filled: &mut usize,
    ) -> std::io::Result<()> {
        match stream.read(&mut buffer[*filled..])? {
            0 => Err(Error::new(
                ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )),
            n => {
                *filled += n;
                Ok(())
            }
        }
    }
    let invalid = |what: &str| Error::new(ErrorKind::InvalidData, what.to_owned());
    let mut filled = 0;
    let end = loop {
        read_more(stream, buffer, &mut filled)?;
        if let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
    let length: usize = match head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
    {
        Some(value) => value
            .trim()
            .parse()
            .map_err(|_| invalid("bad content-length"))?,
        None => 0,
    };
    while filled < end + 4 + length {
        read_more(stream, buffer, &mut filled)?;
    }
    let closing = head.lines().any(|line| line == "connection: close");
    let status = head
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no status line"))?;
    Ok((status, closing))
}

/// Waits until `log_batch` holds `total` batches (every queued batch written), polling
/// every 10 ms; panics after `limit`. Returns how many were written at the first poll
/// that found any, and when that was: rates are taken from there, so a worker's start-up
/// is not counted.
#[allow(clippy::expect_used)] // A benchmark stops when ingest stalls.
pub async fn wait_for_batches(
    db: &iptrack_tests::TestDb,
    conn: &sea_orm::DatabaseConnection,
    total: i64,
    limit: std::time::Duration,
) -> (i64, std::time::Instant) {
    use std::time::{Duration, Instant};
    let started = Instant::now();
    let mut first = None;
    loop {
        let done = db.count(conn, "log_batch").await;
        if first.is_none() && done > 0 {
            first = Some((done, Instant::now()));
        }
        if done >= total {
            return first.expect("batches were written");
        }
        assert!(started.elapsed() < limit, "ingest stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Folds what the worker has not folded yet of the batches' pending counts into
/// `request_count` (PostgreSQL; nothing on SQLite), as a reader would, and returns how
/// long that took. Added to a run's time up to its last commit, it charges the run with
/// the folds its batches caused, the last one included, without the idle wait for the
/// worker's next fold tick.
#[allow(clippy::expect_used)] // A benchmark stops at a database error.
pub async fn fold_the_rest(conn: &sea_orm::DatabaseConnection) -> std::time::Duration {
    let started = std::time::Instant::now();
    iptrack_worker::count_fold::fold_all(conn)
        .await
        .expect("the pending counts fold");
    started.elapsed()
}
