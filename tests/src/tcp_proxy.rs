//! A TCP forwarder a test can cut and restore, to take a shared service (PostgreSQL) away
//! from the processes under test without stopping it for every other test.

use std::net::SocketAddr;

use tokio::{
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    task::JoinHandle,
};

/// Forwards `127.0.0.1:{port}` to `target` while running.
#[derive(Debug)]
pub struct TcpProxy {
    pub port: u16,
    target: SocketAddr,
    /// The accept loop; it owns (and aborts with it) every forwarded connection.
    task: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Starts forwarding on a free port.
    pub async fn start(target: SocketAddr) -> Self {
        let mut proxy = Self {
            port: crate::free_port(),
            target,
            task: None,
        };
        proxy.resume().await;
        proxy
    }

    /// Closes the port and drops every forwarded connection, as a database host going
    /// away would.
    pub fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens on the same port again.
    pub async fn resume(&mut self) {
        assert!(self.task.is_none(), "proxy is already running");
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("cannot listen on the proxy port");
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        let (client_read, client_write) = inbound.into_split();
                        let (server_read, server_write) = outbound.into_split();
                        // Either direction ending ends the connection.
                        tokio::select! {
                            _ = pump(client_read, server_write) => {}
                            _ = pump(server_read, client_write) => {}
                        }
                    }
                });
            }
        }));
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Copies bytes from `from` to `to` until either side closes. Written with the socket's own
/// readiness methods so the harness needs no extra tokio features (which would rebuild
/// every crate that depends on tokio).
async fn pump(from: OwnedReadHalf, to: OwnedWriteHalf) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if from.readable().await.is_err() {
            return;
        }
        let n = match from.try_read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let mut written = 0;
        while written < n {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(&buffer[written..n]) {
                Ok(m) => written += m,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
        }
    }
}
