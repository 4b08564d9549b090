//! Real reverse proxies (Debian's nginx and Caddy) as processes on loopback ports, each
//! with its own temporary directory, running the configurations shipped in `deploy/`:
//! only the addresses are filled in, so what the tests run is what users run.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::free_port;

/// A file of the repository, by its path from the repository's root.
pub fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// Replaces each `${NAME}` of `vars` in `text` (the nginx image's template syntax), and
/// fails if any placeholder is left.
pub fn fill_template(text: &str, vars: &[(&str, String)]) -> String {
    let mut filled = text.to_owned();
    for (name, value) in vars {
        filled = filled.replace(&format!("${{{name}}}"), value);
    }
    assert!(
        !filled.contains("${"),
        "a placeholder was left unfilled:\n{filled}"
    );
    filled
}

/// `IPTRACK_TEST_<NAME>` if set, else the first of `candidates` that exists.
fn program(name: &str, candidates: &[&str]) -> PathBuf {
    if let Ok(path) = std::env::var(format!("IPTRACK_TEST_{}", name.to_ascii_uppercase())) {
        return PathBuf::from(path);
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!("{name} not found at {candidates:?}: apt-get install nginx-light caddy")
        })
}

/// A running proxy, stopped (and its directory removed) when dropped.
#[derive(Debug)]
pub struct Proxy {
    pub name: &'static str,
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Proxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The proxy's own log (nginx's error log; Caddy's output), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// nginx with `deploy/nginx/iptrack.conf.template`, asking `forward_auth` (iptrack)
    /// and proxying to `app`.
    pub async fn nginx(forward_auth: SocketAddr, app: SocketAddr) -> Self {
        let port = free_port();
        let template = std::fs::read_to_string(repo_file("deploy/nginx/iptrack.conf.template"))
            .expect("cannot read the nginx template");
        let site = fill_template(
            &template,
            &[
                ("IPTRACK_FORWARD_AUTH", forward_auth.to_string()),
                ("APP_UPSTREAM", app.to_string()),
                ("NGINX_LISTEN", format!("127.0.0.1:{port}")),
            ],
        );
        Self::nginx_with_site(port, &site).await
    }

    /// nginx serving `site` (what goes inside `http {}`), which listens on `port`.
    pub async fn nginx_with_site(port: u16, site: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        // What the packaged /etc/nginx/nginx.conf gives the site file, in the temp dir; one
        // process (no master), so that killing the child stops nginx entirely.
        let main = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/proxy.log;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  default_type text/plain;\n\
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("site.conf"), site).expect("write site.conf");
        std::fs::write(dir.path().join("nginx.conf"), main).expect("write nginx.conf");
        let child = Command::new(program("nginx", &["/usr/sbin/nginx", "/usr/bin/nginx"]))
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("proxy.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot start nginx");
        Self::started("nginx", port, child, dir).await
    }

    /// Caddy with `deploy/caddy/Caddyfile` as it is; the addresses come from the
    /// environment variables the file reads.
    pub async fn caddy(forward_auth: SocketAddr, app: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("proxy.log")).expect("log file");
        let child = Command::new(program("caddy", &["/usr/bin/caddy"]))
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(repo_file("deploy/caddy/Caddyfile"))
            .env_clear()
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .env("IPTRACK_FORWARD_AUTH", forward_auth.to_string())
            .env("APP_UPSTREAM", app.to_string())
            .env("CADDY_SITE", format!("http://127.0.0.1:{port}"))
            .env("CADDY_ADMIN", "off")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("cannot start caddy");
        Self::started("caddy", port, child, dir).await
    }

    async fn started(name: &'static str, port: u16, child: Child, dir: tempfile::TempDir) -> Self {
        let mut proxy = Self {
            name,
            port,
            child,
            dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return proxy;
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("{name} exited with {status}: {}", proxy.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} did not listen on {port}: {}",
                proxy.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
