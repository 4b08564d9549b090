//! `TCP_NODELAY` on the PostgreSQL connections sqlx opens.
//!
//! sqlx 0.9.0 leaves Nagle's algorithm on and has no option to turn it off (libpq, psql and
//! tokio-postgres all turn it off). For most statements that costs nothing: each is one
//! write answered by the server. A `COPY` is not: sqlx writes the data, then the 5-byte
//! `CopyDone` in a second write, and Nagle holds that until PostgreSQL has acknowledged the
//! data's last, partial segment, which Linux delays by up to 40 ms. Every request-log batch
//! waited that long with its CPU idle: one worker at 4 slots ingested 52,900 rows/s with
//! the box 40–50 % idle, and 93,200 rows/s once the loopback route stopped delaying
//! acknowledgements (BENCHMARKS.md, "Nagle's algorithm and the `COPY`").
//!
//! sqlx does not lend out its socket, so the pool's `after_connect` hook ([`enable`]) finds
//! it among the process's open descriptors (`/proc/self/fd`): every TCP socket whose peer is
//! one of the database host's addresses gets `TCP_NODELAY`. Setting it on a connection
//! that already has it, or that another pool of the process opened to the same server, is
//! what that pool wants too. Elsewhere than Linux it does nothing, and a Unix-socket
//! `DATABASE_URL` (no Nagle there) installs no hook (`super::options`).

use std::{net::SocketAddr, time::Duration};

/// Longest wait for the database host's addresses.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Turns Nagle's algorithm off on every TCP connection of this process to `host:port` (the
/// database); returns how many it changed. Never fails: a connection left with Nagle on is
/// slower, not wrong, so trouble is logged at debug level.
pub async fn enable(host: &str, port: u16) -> usize {
    // sqlx has just resolved the same name, so this is quick; the bound keeps a resolver
    // that hangs from holding up the connection (and the pool's acquire) for longer.
    let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port)));
    let servers: Vec<SocketAddr> = match lookup.await {
        Ok(Ok(addresses)) => addresses.collect(),
        Ok(Err(error)) => {
            tracing::debug!(%error, host, "cannot resolve the database host for TCP_NODELAY");
            return 0;
        }
        Err(_) => {
            tracing::debug!(
                host,
                "resolving the database host for TCP_NODELAY timed out"
            );
            return 0;
        }
    };
    // Off the async threads: a web process serving thousands of clients has as many
    // descriptors to look at.
    let scan = tokio::task::spawn_blocking(move || {
        let mut changed = 0;
        for socket in sockets::connected_to(&servers) {
            match socket.set_nodelay(&servers) {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(%error, "cannot set TCP_NODELAY on a database socket");
                }
            }
        }
        changed
    });
    scan.await.unwrap_or_default()
}

/// This process's TCP connections to one of `servers`: each one's local address, and
/// whether it has Nagle off. What [`enable`] leaves behind, for tests and diagnostics.
pub fn connections_to(servers: &[SocketAddr]) -> Vec<(SocketAddr, bool)> {
    sockets::connected_to(servers)
        .iter()
        .filter_map(|socket| Some((socket.local()?, socket.nodelay().ok()?)))
        .collect()
}

#[cfg(target_os = "linux")]
mod sockets {
    use std::{
        net::SocketAddr,
        os::fd::{BorrowedFd, RawFd},
    };

    /// One of this process's TCP sockets, by descriptor number.
    pub struct Socket(RawFd);

    /// The process's TCP sockets whose peer is one of `servers`.
    pub fn connected_to(servers: &[SocketAddr]) -> Vec<Socket> {
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
            // Only sockets: no call is made on a file, pipe or eventfd.
            .filter(|fd| {
                std::fs::read_link(format!("/proc/self/fd/{fd}"))
                    .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
            })
            .map(Socket)
            .filter(|socket| socket.peer().is_some_and(|peer| servers.contains(&peer)))
            .collect()
    }

    impl Socket {
        /// Runs `f` on the socket.
        fn with<T>(&self, f: impl FnOnce(socket2::SockRef<'_>) -> T) -> T {
            // SAFETY: the descriptor was listed in /proc/self/fd, and is borrowed only for
            // getsockopt, getpeername and setsockopt calls, which touch no memory of the
            // process. Another thread may close it meanwhile (and the number be reused):
            // then a call fails with EBADF, or acts on the new descriptor. The only
            // option ever set is TCP_NODELAY, and only right after the peer was read as
            // the database's, so at worst it lands on another TCP socket, where it is
            // what the process's other clients (reqwest, redis, actix-web) set anyway.
            #[allow(unsafe_code)]
            let fd = unsafe { BorrowedFd::borrow_raw(self.0) };
            f(socket2::SockRef::from(&fd))
        }

        fn peer(&self) -> Option<SocketAddr> {
            self.with(|s| s.peer_addr().ok()?.as_socket())
        }

        pub fn local(&self) -> Option<SocketAddr> {
            self.with(|s| s.local_addr().ok()?.as_socket())
        }

        pub fn nodelay(&self) -> std::io::Result<bool> {
            self.with(|s| s.tcp_nodelay())
        }

        /// Sets `TCP_NODELAY` if the peer is (still) one of `servers`; `Ok(true)` if it was
        /// off.
        pub fn set_nodelay(&self, servers: &[SocketAddr]) -> std::io::Result<bool> {
            self.with(|s| {
                let peer = s.peer_addr()?.as_socket();
                if !peer.is_some_and(|peer| servers.contains(&peer)) || s.tcp_nodelay()? {
                    return Ok(false);
                }
                s.set_tcp_nodelay(true)?;
                Ok(true)
            })
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sockets {
    use std::net::SocketAddr;

    /// No socket is ever found here: the descriptors are not listed the Linux way.
    pub enum Socket {}

    pub fn connected_to(_servers: &[SocketAddr]) -> Vec<Socket> {
        Vec::new()
    }

    impl Socket {
        pub fn local(&self) -> Option<SocketAddr> {
            match *self {}
        }

        pub fn nodelay(&self) -> std::io::Result<bool> {
            match *self {}
        }

        pub fn set_nodelay(&self, _servers: &[SocketAddr]) -> std::io::Result<bool> {
            match *self {}
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[tokio::test]
    async fn nagle_goes_off_on_connections_to_the_server_named_and_no_other() {
        let (server, other) = (
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        );
        let (port, other_port) = (
            server.local_addr().unwrap().port(),
            other.local_addr().unwrap().port(),
        );
        let to_server = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let to_other = TcpStream::connect(("127.0.0.1", other_port)).unwrap();
        assert!(!to_server.nodelay().unwrap(), "a new socket has Nagle on");

        assert_eq!(enable("127.0.0.1", port).await, 1);
        assert!(to_server.nodelay().unwrap());
        assert!(
            !to_other.nodelay().unwrap(),
            "a socket to another port is left alone"
        );
        // The server's side of the connection is not a connection *to* the server.
        let (accepted, _) = server.accept().unwrap();
        assert!(!accepted.nodelay().unwrap());

        assert_eq!(
            enable("127.0.0.1", port).await,
            0,
            "already off: nothing to do"
        );
        let found = connections_to(&[SocketAddr::from(([127, 0, 0, 1], port))]);
        assert_eq!(found, [(to_server.local_addr().unwrap(), true)]);
    }

    #[tokio::test]
    async fn a_host_that_does_not_resolve_changes_nothing() {
        assert_eq!(enable("no-such-host.invalid", 5432).await, 0);
    }
}
