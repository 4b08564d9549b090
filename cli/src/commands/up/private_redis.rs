//! The Redis `iptrack up` uses when `REDIS_URL` is not set: one already answering at
//! `IPTRACK_UP_REDIS_PROBE_URL` (default `redis://127.0.0.1:6379`), or else a private
//! `redis-server` child.
//!
//! The private server listens on 127.0.0.1 only, on a free port, and keeps its
//! append-only file in a directory of its own beside the SQLite database
//! (`<database file>.redis/`; `./iptrack-redis/` with PostgreSQL), so queued jobs survive
//! a restart of `iptrack up` like the database does.
//!
//! It must not outlive iptrack, however iptrack ends. It runs under a small `sh` that
//! reads its standard input, a pipe from iptrack: when iptrack closes the pipe (a normal
//! stop) or dies (SIGKILL, a crash: the kernel closes the pipe), `read` returns and the
//! shell stops redis-server with SIGTERM, which writes its append-only file and exits.
//! The child gets a process group of its own, so a Ctrl-C in the terminal reaches
//! iptrack only: Redis must keep running until iptrack has flushed its buffers into it.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use iptrack_core::Settings;
use tokio::process::{Child, ChildStdin, Command};

/// How long a started redis-server may take to answer (loading a large append-only file
/// takes a while).
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long a stopping redis-server may take to write its file and exit.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// Why `iptrack up` found no Redis to use. Each is a setting to fix: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum NoRedis {
    #[error(
        "no Redis answers at {probe} and redis-server is not installed: install Redis \
         (apt install redis-server, brew install redis) or set REDIS_URL"
    )]
    NotInstalled { probe: String },
    #[error(
        "something listens at {probe} but does not answer as Redis ({reason}); set REDIS_URL, \
         or IPTRACK_UP_REDIS_PROBE_URL to look elsewhere"
    )]
    NotRedis { probe: String, reason: String },
}

/// A running private redis-server, stopped by [`PrivateRedis::stop`] (or, should iptrack
/// die first, by its shell).
#[derive(Debug)]
pub struct PrivateRedis {
    pub url: String,
    pub dir: PathBuf,
    child: Child,
    /// The write end of the shell's standard input; closing it stops the server.
    lifeline: Option<ChildStdin>,
}

/// Chooses the Redis for `iptrack up`, updating `settings.redis.url`. Returns the
/// private server when one was started.
pub async fn choose(settings: &mut Settings) -> anyhow::Result<Option<PrivateRedis>> {
    if settings.redis.url_given {
        return Ok(None);
    }
    let probe = settings.redis.up_probe_url.clone();
    match ping(probe.expose()).await {
        Ping::Answered => {
            tracing::info!(redis = %probe.redacted(), "using the Redis that answers at the default address");
            settings.redis.url = probe;
            return Ok(None);
        }
        Ping::Other(reason) => {
            return Err(NoRedis::NotRedis {
                probe: probe.redacted(),
                reason,
            }
            .into());
        }
        Ping::Nothing => {}
    }
    let Some(server) = find_on_path("redis-server") else {
        return Err(NoRedis::NotInstalled {
            probe: probe.redacted(),
        }
        .into());
    };
    let private = PrivateRedis::start(&server, &data_dir(settings.database.url.expose())).await?;
    settings.redis.url = private.url.as_str().into();
    Ok(Some(private))
}

impl PrivateRedis {
    async fn start(server: &Path, dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the Redis directory {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let port = free_port().context("cannot find a free port for redis-server")?;
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            // `$0` is redis-server, `$@` its arguments. A background job of a
            // non-interactive shell reads /dev/null, so only `read` reads the pipe.
            .arg(r#""$0" "$@" & server=$!; read -r _; kill -TERM "$server"; wait "$server""#)
            .arg(server)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
            ])
            .args(["--appendonly", "yes", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("cannot start redis-server")?;
        let lifeline = child.stdin.take();
        let mut redis = Self {
            url: format!("redis://127.0.0.1:{port}"),
            dir,
            child,
            lifeline,
        };
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        loop {
            if let Ping::Answered = ping(&redis.url).await {
                break;
            }
            if let Ok(Some(status)) = redis.child.try_wait() {
                anyhow::bail!(
                    "redis-server exited at start ({status}); see {}",
                    redis.dir.join("redis.log").display()
                );
            }
            if tokio::time::Instant::now() >= deadline {
                let log = redis.dir.join("redis.log");
                redis.stop().await;
                anyhow::bail!(
                    "redis-server did not answer within {} s; see {}",
                    START_LIMIT.as_secs(),
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(
            redis = %redis.url,
            dir = %redis.dir.display(),
            "started a private redis-server (REDIS_URL is not set and none answers at the default address)"
        );
        Ok(redis)
    }

    /// Stops the server (it writes its append-only file first) and waits for it.
    pub async fn stop(mut self) {
        drop(self.lifeline.take());
        match tokio::time::timeout(STOP_LIMIT, self.child.wait()).await {
            Ok(_) => tracing::info!("private redis-server stopped"),
            Err(_) => {
                tracing::warn!("private redis-server did not stop in time; killing its shell");
                let _ = self.child.kill().await;
            }
        }
    }
}

enum Ping {
    Answered,
    /// Nothing listens there.
    Nothing,
    /// Something listens but is no Redis we can use.
    Other(String),
}

async fn ping(url: &str) -> Ping {
    let client = match redis::Client::open(url) {
        Ok(client) => client,
        Err(error) => return Ping::Other(error.to_string()),
    };
    let connect = client.get_multiplexed_async_connection();
    let mut conn = match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) if error.is_connection_refusal() => return Ping::Nothing,
        Ok(Err(error)) => return Ping::Other(error.to_string()),
        Err(_) => return Ping::Other("no answer within 2 s".into()),
    };
    let ping = redis::cmd("PING");
    let pong = ping.query_async::<String>(&mut conn);
    match tokio::time::timeout(Duration::from_secs(2), pong).await {
        Ok(Ok(_)) => Ping::Answered,
        Ok(Err(error)) => Ping::Other(error.to_string()),
        Err(_) => Ping::Other("no answer to PING within 2 s".into()),
    }
}

/// `<database file>.redis` beside a SQLite database; `iptrack-redis` otherwise.
fn data_dir(database_url: &str) -> PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or_default())
        .filter(|path| !path.is_empty() && *path != ":memory:");
    match file {
        Some(path) => PathBuf::from(format!("{path}.redis")),
        None => PathBuf::from("iptrack-redis"),
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::data_dir;

    #[test]
    fn the_redis_directory_sits_beside_the_sqlite_database() {
        assert_eq!(
            data_dir("sqlite://iptrack.db?mode=rwc"),
            std::path::PathBuf::from("iptrack.db.redis")
        );
        assert_eq!(
            data_dir("sqlite:///var/lib/iptrack/app.db"),
            std::path::PathBuf::from("/var/lib/iptrack/app.db.redis")
        );
        assert_eq!(
            data_dir("postgres://u@h/db"),
            std::path::PathBuf::from("iptrack-redis")
        );
        assert_eq!(
            data_dir("sqlite::memory:"),
            std::path::PathBuf::from("iptrack-redis")
        );
    }
}
