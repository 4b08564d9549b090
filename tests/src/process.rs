//! The real binaries as child processes, the way users run them.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, PoisonError},
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

/// Path of a workspace binary; panics with the command to run when it was not built, or
/// when it is older than a source it is built from: a forgotten `cargo build --bins` must
/// not let the tests pass (or fail) against yesterday's code.
pub fn binary(name: &str) -> PathBuf {
    let path = binary_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (cargo build --workspace --bins --examples)",
        path.display()
    );
    // Checked once per binary and test process: a dep-info file lists a few thousand files.
    static CHECKED: Mutex<BTreeMap<PathBuf, Result<(), String>>> = Mutex::new(BTreeMap::new());
    let verdict = CHECKED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(path.clone())
        .or_insert_with(|| check_fresh(&path))
        .clone();
    if let Err(why) = verdict {
        panic!("{why}: rebuild the binaries first (cargo build --workspace --bins --examples)");
    }
    path
}

/// Whether the binary at `path` is at least as new as every file its dep-info
/// (`<binary>.d`, written by cargo next to it) says it was built from.
fn check_fresh(path: &Path) -> Result<(), String> {
    let built = std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .map_err(|e| format!("cannot read the time of {}: {e}", path.display()))?;
    let dep_info = path.with_extension("d");
    let text = std::fs::read_to_string(&dep_info).map_err(|e| {
        format!(
            "cannot tell whether {} is current: no dep-info {} ({e})",
            path.display(),
            dep_info.display()
        )
    })?;
    for source in dep_info_sources(&text) {
        let modified = std::fs::metadata(&source).and_then(|meta| meta.modified());
        match modified {
            Ok(modified) if modified <= built => {}
            Ok(_) => {
                return Err(format!(
                    "{} is older than {}, a source it is built from",
                    path.display(),
                    source.display()
                ));
            }
            Err(e) => {
                return Err(format!(
                    "{} was built from {}, which is gone ({e})",
                    path.display(),
                    source.display()
                ));
            }
        }
    }
    Ok(())
}

/// The prerequisites of a Makefile-style dep-info file (`target: source source ...`, one
/// rule per line, spaces in paths escaped with a backslash).
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let Some((_, prerequisites)) = line.split_once(": ") else {
            continue;
        };
        let mut current = String::new();
        let mut chars = prerequisites.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => current.extend(chars.next()),
                ' ' => {
                    if !current.is_empty() {
                        sources.push(PathBuf::from(std::mem::take(&mut current)));
                    }
                }
                c => current.push(c),
            }
        }
        if !current.is_empty() {
            sources.push(PathBuf::from(current));
        }
    }
    sources
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_sources_are_every_prerequisite_with_escaped_spaces_kept() {
        let text = "/t/debug/iptrack: /w/cli/src/main.rs /w/my\\ dir/lib.rs\n\n/w/x.rs:\n";
        assert_eq!(
            dep_info_sources(text),
            [
                PathBuf::from("/w/cli/src/main.rs"),
                PathBuf::from("/w/my dir/lib.rs")
            ]
        );
    }

    #[test]
    fn a_binary_older_than_a_source_is_refused_and_a_newer_one_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("main.rs");
        let binary = dir.path().join("tool");
        std::fs::write(&source, "fn main() {}").unwrap();
        std::fs::write(&binary, "binary").unwrap();
        std::fs::write(
            binary.with_extension("d"),
            format!("{}: {}\n", binary.display(), source.display()),
        )
        .unwrap();
        let at = |secs| std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let touch = |path: &Path, secs| {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(at(secs))
                .unwrap();
        };
        touch(&source, 1_000);
        touch(&binary, 2_000);
        assert_eq!(check_fresh(&binary), Ok(()));
        touch(&source, 3_000);
        let refused = check_fresh(&binary).unwrap_err();
        assert!(refused.contains("is older than"), "{refused}");
        std::fs::remove_file(&source).unwrap();
        let refused = check_fresh(&binary).unwrap_err();
        assert!(refused.contains("which is gone"), "{refused}");
        std::fs::remove_file(binary.with_extension("d")).unwrap();
        let refused = check_fresh(&binary).unwrap_err();
        assert!(refused.contains("no dep-info"), "{refused}");
    }
}
