//! Throwaway certificates for tests of TLS connections, made with the
//! `openssl` command line tool: a CA, a server certificate it signs (for
//! `localhost` and `127.0.0.1`), and a second, unrelated CA that a client may
//! be told to trust to prove it refuses the server.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// The files of a test PKI, all PEM, in one directory.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub dir: PathBuf,
    /// The CA that signed the server's certificate.
    pub ca_cert: PathBuf,
    /// A CA that signed nothing here: trusting only it must refuse the server.
    pub untrusted_ca_cert: PathBuf,
    /// The server's certificate (subject alternative names `localhost` and
    /// `127.0.0.1`), signed by [`Self::ca_cert`].
    pub server_cert: PathBuf,
    /// Its unencrypted PKCS#8 private key.
    pub server_key: PathBuf,
    /// Key and certificate in one file (Kafka's `ssl.keystore.type=PEM`).
    pub server_keystore: PathBuf,
}

impl TestPki {
    /// Makes the CAs and the server certificate in `dir` (created when
    /// missing), valid for two days, RSA 2048 (what every server here reads).
    pub fn create(dir: &Path) -> Result<Self> {
        let openssl = crate::process::find_executable("openssl").context("openssl not found (install openssl)")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let run = |args: &[&str], what: &str| -> Result<()> {
            let output = Command::new(&openssl)
                .args(args)
                .current_dir(dir)
                .output()
                .with_context(|| format!("running openssl ({what})"))?;
            if !output.status.success() {
                bail!("openssl {what} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
            }
            Ok(())
        };
        for (name, subject) in [("ca", "/CN=local-stack test CA"), ("untrusted-ca", "/CN=local-stack untrusted CA")] {
            run(
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                    "-days",
                    "2",
                    "-subj",
                    subject,
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
                &format!("making {name}"),
            )?;
        }
        run(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
            "making the server key",
        )?;
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )?;
        run(
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
            "signing the server certificate",
        )?;
        let key = std::fs::read_to_string(dir.join("server.key"))?;
        let cert = std::fs::read_to_string(dir.join("server.pem"))?;
        std::fs::write(dir.join("server-keystore.pem"), format!("{key}{cert}"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.pem"),
            untrusted_ca_cert: dir.join("untrusted-ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            server_keystore: dir.join("server-keystore.pem"),
        })
    }
}
