//! A `redis-server` of the test's own that speaks TLS only, with a certificate signed by a
//! throwaway CA made here: what a managed Redis with a private CA looks like to iptrack.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

#[derive(Debug)]
pub struct TlsRedis {
    pub port: u16,
    child: Child,
    /// Holds `ca.pem`, `server.pem` and `server.key`.
    dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Starts the server on a free port (no plain-text port at all) and waits until a TLS
    /// client that trusts the CA gets an answer.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &Issuer::from_params(&ca_params, &ca_key))
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();

        let port = crate::free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--tls-cert-file")
            .arg(dir.path().join("server.pem"))
            .arg("--tls-key-file")
            .arg(dir.path().join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(dir.path().join("ca.pem"))
            // Clients authenticate like iptrack's: by URL and password, not certificate.
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server (is it installed, with TLS?)");
        let redis = Self { port, child, dir };
        let client =
            iptrack_core::redis_client::open(&redis.url(), Some(&redis.ca_file())).unwrap();
        for _ in 0..100 {
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("TLS redis-server did not start on port {port}");
    }

    /// `rediss://localhost:<port>`: the name the certificate is for.
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }

    /// The CA that signed the server's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
