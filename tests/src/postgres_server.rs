//! A PostgreSQL cluster of the test's own (`initdb` + `pg_ctl` in a temporary directory, on
//! a free port), so a test can really stop the database server and start it again without
//! taking the shared server away from every other test.
//!
//! The binaries are found in `IPTRACK_TEST_PG_BIN`, else the newest
//! `/usr/lib/postgresql/<version>/bin`. PostgreSQL refuses to run as root, so when the test
//! runs as root every command runs as the `postgres` OS user (through `runuser`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A private PostgreSQL server; stopped and deleted when dropped.
#[derive(Debug)]
pub struct PrivatePostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    running: bool,
}

fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("IPTRACK_TEST_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("no /usr/lib/postgresql: install PostgreSQL or set IPTRACK_TEST_PG_BIN")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql")
}

fn running_as_root() -> bool {
    // `id -u` rather than libc's geteuid: the harness stays free of unsafe code.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivatePostgres {
    /// Creates a cluster (trust authentication, superuser `postgres`) and starts it.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("iptrack-pg-")
            .tempdir()
            .expect("cannot create a temporary directory");
        if running_as_root() {
            let status = Command::new("chown")
                .args(["postgres:"])
                .arg(dir.path())
                .status()
                .expect("cannot run chown");
            assert!(
                status.success(),
                "cannot hand the cluster directory to postgres"
            );
        }
        let mut server = Self {
            port: crate::free_port(),
            bin: pg_bin(),
            dir,
            running: false,
        };
        let data = server.data_dir();
        let output = server
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("cannot run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        server.start_again();
        server
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// `postgres://postgres@127.0.0.1:{port}` (append `/database`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(!self.running, "private postgres is already running");
        let socket_dir = self.dir.path().display().to_string();
        let options = format!(
            "-p {} -k {socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port
        );
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-o", &options, "-l"])
            .arg(self.log_path())
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("cannot run pg_ctl start");
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.log_path()).unwrap_or_default()
        );
        self.running = true;
    }

    /// `pg_ctl stop -m fast`: every client connection is ended and new ones are refused,
    /// as when an operator stops the database server.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .expect("cannot run pg_ctl stop");
        assert!(
            output.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.running = false;
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}
