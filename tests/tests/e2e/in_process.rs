//! The reference server inside the test's own process (zero2prod's `spawn_app`), for the
//! tests about what it answers rather than how the process behaves.
//!
//! Settings are read from the stack's environment by the same loader the binaries use, so
//! an in-process server and an `iptrack-web` process given one [`Stack`] are configured
//! alike. The listeners bind port 0: no free-port guess that a parallel test can take
//! first. Signals, exit codes, start-up failures, logs and crashes are process behaviour:
//! those tests keep starting the binaries (see [`iptrack_tests::process`]).

use std::net::SocketAddr;

use iptrack_web::{Application, WebOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Stack;

/// A reference server running on the test's runtime; stopped when dropped.
#[derive(Debug)]
pub struct WebApp {
    /// The operators' port, when the stack sets `IPTRACK_ADMIN_BIND`.
    pub admin_port: Option<u16>,
    stop: CancellationToken,
    /// The serving task; the server's outcome is not awaited, as a killed process's is not.
    _served: JoinHandle<anyhow::Result<()>>,
}

impl Stack {
    /// Builds the reference server from this stack's environment, on 127.0.0.1 port 0
    /// (and the admin listener too, when `IPTRACK_ADMIN_BIND` is set), and serves it on
    /// the test's runtime. Afterwards [`Stack::url`] points at it and `IPTRACK_BIND` holds
    /// the port taken, for the CLI and any process started from this stack.
    pub async fn serve_web(&mut self) -> WebApp {
        let mut settings =
            iptrack_core::Settings::from_sources(None, |name| self.env.get(name).cloned())
                .expect("the stack's environment is not valid iptrack settings");
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.web.bind = any_port;
        if settings.admin.bind.is_some() {
            settings.admin.bind = Some(any_port);
        }
        let app = Application::build(&settings, WebOptions::default())
            .await
            .expect("the reference server did not build");
        self.port = app.port();
        self.env.insert(
            "IPTRACK_BIND".to_owned(),
            format!("127.0.0.1:{}", self.port),
        );
        let admin_port = app.admin_port();
        if let Some(port) = admin_port {
            self.env
                .insert("IPTRACK_ADMIN_BIND".to_owned(), format!("127.0.0.1:{port}"));
        }
        let stop = CancellationToken::new();
        let served = tokio::spawn(app.run_until_stopped(stop.clone()));
        WebApp {
            admin_port,
            stop,
            _served: served,
        }
    }
}

impl Drop for WebApp {
    /// Starts the stop a signal starts (no new connections, buffered events flushed) and
    /// does not wait for it, as dropping a process kills it: what is left ends with the
    /// test's runtime, whose shutdown drops the server and so stops its worker threads.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
