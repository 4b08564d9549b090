//! The real binaries as child processes, the way users run them.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// Directory holding the built binaries, `target/<profile>`: test executables live in its
/// `deps/`, benchmark binaries in it directly.
fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("no current executable");
    let dir = exe.parent().expect("executable has no directory");
    if dir.ends_with("deps") {
        dir.parent().expect("deps has no parent").to_owned()
    } else {
        dir.to_owned()
    }
}

/// Path of a workspace binary; panics with the command to run when it was not built.
pub fn binary(name: &str) -> PathBuf {
    let path = binary_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A running iptrack process, killed when dropped.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    child: Option<Child>,
}

impl Service {
    /// Starts `binary` with `args` and exactly the given iptrack environment (plus PATH and
    /// RUST_LOG), so the developer's own settings never leak into a test.
    pub fn start(binary_name: &str, args: &[&str], env: &HashMap<String, String>) -> Self {
        let mut command = Command::new(binary(binary_name));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env)
            .stdin(Stdio::null())
            // Inherit stderr: a failing test shows the processes' logs.
            .stdout(Stdio::null());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary_name}: {e}"));
        Self {
            name: binary_name.to_owned(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("process already stopped")
    }

    /// SIGKILL: no chance to clean up, like a crashed machine.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process has exited, and how.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// Waits up to `limit` for the process to exit on its own.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `url` answers with any HTTP status.
pub async fn wait_until_listening(url: &str, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let client = std::net::TcpStream::connect_timeout;
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("no host in url")
        .parse()
        .expect("url host is not host:port");
    while tokio::time::Instant::now() < deadline {
        if client(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not start listening within {limit:?}");
}
