//! Redis for tests: a key prefix of the test's own on the shared server, or a private
//! `redis-server` process that a test may stop and start again.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A unique key prefix on the shared Redis; its keys are deleted when this is dropped.
#[derive(Debug)]
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
}

impl TestRedis {
    pub fn new() -> Self {
        let url = std::env::var("IPTRACK_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let prefix = format!("iptrack-test-{}", uuid::Uuid::new_v4().simple());
        Self { url, prefix }
    }

    /// A plain (non-queue) connection for assertions.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("bad IPTRACK_TEST_REDIS_URL")
            .get_multiplexed_async_connection()
            .await
            .expect("cannot connect to Redis (IPTRACK_TEST_REDIS_URL)")
    }

    /// Every key under the test's prefix, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut conn = self.connection().await;
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut conn)
            .await
            .expect("KEYS failed");
        keys.sort();
        keys
    }
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        delete_prefix(&self.url, &self.prefix);
    }
}

fn delete_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
        return;
    };
    let keys: Vec<String> = match redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
    {
        Ok(keys) => keys,
        Err(_) => return,
    };
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
    }
}

/// A `redis-server` of the test's own, on a free port: keeping nothing on disk
/// ([`PrivateRedis::start`]), or with append-only persistence the way
/// docker-compose.yml runs Redis ([`PrivateRedis::start_persistent`]).
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    /// The data directory of a persistent server.
    dir: Option<tempfile::TempDir>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let mut redis = Self {
            port: crate::free_port(),
            child: None,
            dir: None,
        };
        redis.restart();
        redis
    }

    /// A server with `appendonly yes` in a temporary directory, like compose's Redis, so
    /// queued jobs survive [`PrivateRedis::terminate`] and [`PrivateRedis::restart`].
    pub fn start_persistent() -> Self {
        let mut redis = Self {
            port: crate::free_port(),
            child: None,
            dir: Some(tempfile::tempdir().expect("cannot create a temporary directory")),
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "private redis is already running");
        let mut command = Command::new("redis-server");
        command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"]);
        match &self.dir {
            Some(dir) => command
                .args(["--save", "", "--appendonly", "yes", "--dir"])
                .arg(dir.path()),
            None => command.args(["--save", "", "--appendonly", "no"]),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server (is it installed?)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("bad url");
        for _ in 0..100 {
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(100))
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server did not start on port {}", self.port);
    }

    /// SIGTERM, as `docker compose restart redis` sends: the server closes its clients,
    /// writes its append-only file and exits.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Kills the server (SIGKILL); clients see their connections drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
