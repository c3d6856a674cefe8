//! TLS of every client, against servers of the test's own that speak TLS
//! with a throwaway CA (`local_stack::TestPki`): a scratch PostgreSQL with
//! `ssl=on`, a scratch Kafka with `SSL` and `SASL_SSL` listeners, a
//! `redis-server` on a TLS port, and ClickHouse behind a TLS-terminating
//! proxy. Each client connects when it trusts the CA, and refuses the
//! server, saying why, when it trusts only an unrelated CA.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use local_stack::{ScratchKafka, ScratchPostgres, TestPki};
use rdkafka::{
    ClientContext, Message as _,
    consumer::{BaseConsumer, Consumer as _},
    producer::{FutureProducer, FutureRecord},
};
use service_kit::{
    ClickHouseConfig, KafkaConfig, PostgresConfig, Probe as _, RedisConfig,
    deps::{clickhouse::ClickHouseProbe, kafka, postgres, redis},
    testing,
};

fn pki() -> (TestPki, PathBuf) {
    let dir = std::env::temp_dir().join(testing::unique_name("service-kit-tls"));
    let pki = TestPki::create(&dir).expect("test certificates");
    (pki, dir)
}

fn text(error: &anyhow::Error) -> String {
    format!("{error:#}")
}

// ---------------------------------------------------------------- PostgreSQL

/// Whether the connection `cfg` makes is encrypted (`pg_stat_ssl`).
async fn encrypted(cfg: &PostgresConfig) -> anyhow::Result<bool> {
    let client = postgres::connect(cfg).await?;
    let row = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await?;
    Ok(row.get(0))
}

fn pg(url: String, ca_file: Option<&Path>) -> PostgresConfig {
    PostgresConfig { url, ca_file: ca_file.map(Path::to_path_buf), ..PostgresConfig::default() }
}

#[tokio::test]
async fn postgres_honours_sslmode_and_verifies_the_server() {
    let (pki, dir) = pki();
    let server = ScratchPostgres::start_tls(&pki).await.expect("scratch postgres with ssl=on");
    let url = server.url();
    let port = server.ports()[0];
    let ca = Some(pki.ca_cert.as_path());
    let untrusted = Some(pki.untrusted_ca_cert.as_path());

    // verify-full with the right CA: by IP (in the certificate) and by name.
    assert!(encrypted(&pg(format!("{url}?sslmode=verify-full"), ca)).await.expect("verify-full by IP"));
    let by_name = format!("postgres://analytics:analytics@localhost:{port}/analytics?sslmode=verify-full");
    assert!(encrypted(&pg(by_name, ca)).await.expect("verify-full by name"));
    // The CA may come from the URL's sslrootcert instead.
    let in_url = format!("{url}?sslmode=verify-full&sslrootcert={}", pki.ca_cert.display());
    assert!(encrypted(&pg(in_url, None)).await.expect("verify-full with sslrootcert"));

    // An unrelated CA: refused, saying why, in every verifying mode.
    for mode in ["verify-full", "verify-ca", "require"] {
        let error = encrypted(&pg(format!("{url}?sslmode={mode}"), untrusted)).await.unwrap_err();
        let message = text(&error);
        assert!(
            message.contains("TLS handshake with the postgres server 127.0.0.1 failed")
                && message.contains("invalid peer certificate: UnknownIssuer"),
            "sslmode={mode}: {message}"
        );
    }

    // A name the certificate does not hold: verify-full refuses, verify-ca accepts.
    let other_name =
        format!("postgres://analytics:analytics@db.example.invalid:{port}/analytics?hostaddr=127.0.0.1&sslmode=");
    let error = encrypted(&pg(format!("{other_name}verify-full"), ca)).await.unwrap_err();
    assert!(text(&error).contains("certificate not valid for name \"db.example.invalid\""), "{}", text(&error));
    assert!(encrypted(&pg(format!("{other_name}verify-ca"), ca)).await.expect("verify-ca ignores the name"));

    // require and prefer without a CA encrypt and check nothing (libpq's meaning);
    // disable does not encrypt.
    assert!(encrypted(&pg(format!("{url}?sslmode=require"), None)).await.expect("require"));
    assert!(encrypted(&pg(url.clone(), None)).await.expect("prefer (the default)"));
    assert!(!encrypted(&pg(format!("{url}?sslmode=disable"), untrusted)).await.expect("disable"));

    // The pool, its probe and the migrations go through the same TLS.
    let verified = pg(format!("{url}?sslmode=verify-full"), ca);
    service_kit::migrate::apply_postgres(&verified).await.expect("migrations over TLS");
    let probe = postgres::PostgresProbe::new(postgres::pool(&verified).unwrap());
    probe.check().await.expect("probe over TLS");
    let refused =
        postgres::PostgresProbe::new(postgres::pool(&pg(format!("{url}?sslmode=verify-full"), untrusted)).unwrap());
    let error = refused.check().await.unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");
    let error = service_kit::migrate::apply_postgres(&pg(format!("{url}?sslmode=verify-full"), untrusted))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("UnknownIssuer"), "{error}");

    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn postgres_config_problems_name_an_unreadable_ca_and_a_bad_sslmode() {
    let missing = pg("postgres://a@db/x?sslmode=verify-full".into(), Some(Path::new("/nonexistent/ca.pem")));
    let problems = missing.problems();
    assert!(
        problems.iter().any(|p| p.contains("postgres.ca_file") && p.contains("/nonexistent/ca.pem")),
        "{problems:?}"
    );
    let problems = pg("postgres://a@db/x?sslmode=sometimes".into(), None).problems();
    assert!(problems.iter().any(|p| p.contains("sslmode=sometimes")), "{problems:?}");
}

// --------------------------------------------------------------------- Kafka

/// Collects the errors librdkafka reports (a failed TLS handshake, a
/// refused SASL login).
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl ClientContext for Errors {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.0.lock().expect("errors lock").push(format!("{error}: {reason}"));
    }
}

impl rdkafka::consumer::ConsumerContext for Errors {}

/// Asks for metadata until `deadline`; `Ok` when a broker answered, else
/// the errors librdkafka reported meanwhile.
fn metadata(cfg: &KafkaConfig, deadline: Duration) -> Result<usize, Vec<String>> {
    let errors = Errors::default();
    let consumer: BaseConsumer<Errors> = kafka::client_config(cfg)
        .set("group.id", "tls-test")
        .create_with_context(errors.clone())
        .expect("client config accepted (librdkafka built with OpenSSL)");
    let started = Instant::now();
    while started.elapsed() < deadline {
        if let Ok(metadata) = consumer.fetch_metadata(None, Duration::from_millis(500)) {
            return Ok(metadata.brokers().len());
        }
        // Serves the error callbacks.
        let _ = consumer.poll(Duration::from_millis(100));
        if !errors.0.lock().expect("errors lock").is_empty() {
            break;
        }
    }
    let seen = errors.0.lock().expect("errors lock").clone();
    Err(seen)
}

fn ssl(brokers: String, ca: &Path) -> KafkaConfig {
    let mut cfg = KafkaConfig { brokers, topic_prefix: testing::unique_name("tls."), ..KafkaConfig::default() };
    cfg.properties.insert("security.protocol".into(), "SSL".into());
    cfg.properties.insert("ssl.ca.location".into(), ca.display().to_string());
    cfg
}

#[tokio::test]
async fn kafka_over_ssl_and_sasl_ssl_verifies_the_broker() {
    let (pki, dir) = pki();
    let broker = ScratchKafka::start_tls(&pki, &[("analytics", "analytics-secret")]).await.expect("scratch kafka");
    let ssl_bootstrap = broker.ssl_bootstrap().unwrap();

    // The right CA: topics created, one message produced and read back, probe passes.
    let cfg = ssl(ssl_bootstrap.clone(), &pki.ca_cert);
    let topic = format!("{}events", cfg.topic_prefix);
    kafka::ensure_topics(&cfg, &[kafka::TopicSpec { name: topic.clone(), partitions: 1, retention_ms: None }])
        .await
        .expect("topic created over TLS");
    let producer: FutureProducer = kafka::client_config(&cfg).create().unwrap();
    producer
        .send(FutureRecord::to(&topic).key("k").payload("over tls"), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produced over TLS");
    let consumer: BaseConsumer = kafka::client_config(&cfg)
        .set("group.id", testing::unique_name("tls"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let read = testing::eventually(Duration::from_secs(30), || async {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => Ok(message.payload().map(|p| String::from_utf8_lossy(p).into_owned())),
            Some(Err(e)) => anyhow::bail!("{e}"),
            None => anyhow::bail!("nothing yet"),
        }
    })
    .await
    .expect("consumed over TLS");
    assert_eq!(read.as_deref(), Some("over tls"));
    // Closed while the broker runs: a consumer of a group waits for it to leave.
    drop(consumer);
    drop(producer);
    kafka::KafkaProbe::new(&cfg, Duration::from_secs(5)).unwrap().check().await.expect("probe over TLS");

    // An unrelated CA: no metadata, and the handshake failure says why.
    let errors = metadata(&ssl(ssl_bootstrap.clone(), &pki.untrusted_ca_cert), Duration::from_secs(20)).unwrap_err();
    assert!(errors.iter().any(|e| e.contains("certificate verify failed")), "{errors:?}");
    let error = kafka::KafkaProbe::new(&ssl(ssl_bootstrap, &pki.untrusted_ca_cert), Duration::from_secs(2))
        .unwrap()
        .check()
        .await
        .unwrap_err();
    assert!(!error.is_empty());

    // SASL_SSL with PLAIN: the account's password works, another is refused.
    let sasl = |password: &str| {
        let mut cfg = ssl(broker.sasl_ssl_bootstrap().unwrap(), &pki.ca_cert);
        for (name, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "analytics"),
            ("sasl.password", password),
        ] {
            cfg.properties.insert(name.into(), value.into());
        }
        cfg
    };
    assert_eq!(metadata(&sasl("analytics-secret"), Duration::from_secs(20)), Ok(1));
    let errors = metadata(&sasl("wrong"), Duration::from_secs(20)).unwrap_err();
    assert!(errors.iter().any(|e| e.contains("Authentication failed")), "{errors:?}");

    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
}

// --------------------------------------------------------------------- Redis

/// `redis-server` listening only on a TLS port, killed on drop.
struct TlsRedis {
    child: std::process::Child,
    port: u16,
}

impl TlsRedis {
    async fn start(pki: &TestPki, dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&pki.server_cert)
            .arg("--tls-key-file")
            .arg(&pki.server_key)
            .arg("--tls-ca-cert-file")
            .arg(&pki.ca_cert)
            .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian's is built with TLS)");
        let redis = Self { child, port };
        testing::eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            Ok(())
        })
        .await
        .expect("redis-server listening on its TLS port");
        redis
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn redis_over_tls_verifies_the_server() {
    use fred::interfaces::{ClientLike as _, EventInterface as _};
    let (pki, dir) = pki();
    let server = TlsRedis::start(&pki, &dir).await;
    let config = |host: &str, ca: &Path| RedisConfig {
        url: format!("rediss://{host}:{}", server.port),
        ca_file: Some(ca.to_path_buf()),
        ..RedisConfig::default()
    };

    for host in ["127.0.0.1", "localhost"] {
        let client = redis::client(&config(host, &pki.ca_cert)).unwrap();
        let probe = redis::RedisProbe::new(client.clone());
        testing::eventually(Duration::from_secs(15), || async { probe.check().await.map_err(anyhow::Error::msg) })
            .await
            .unwrap_or_else(|e| panic!("PING over TLS to {host}: {e:#}"));
        client.quit().await.unwrap();
    }

    let client = redis::client(&config("127.0.0.1", &pki.untrusted_ca_cert)).unwrap();
    let mut errors = client.error_rx();
    let (error, _) = tokio::time::timeout(Duration::from_secs(15), errors.recv())
        .await
        .expect("a connection error within 15 s")
        .unwrap();
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    assert!(redis::RedisProbe::new(client.clone()).check().await.is_err());
    let _ = client.quit().await;

    // A CA file with a plain redis:// URL is a configuration mistake.
    let plain = RedisConfig { url: "redis://127.0.0.1:6379".into(), ..config("127.0.0.1", &pki.ca_cert) };
    assert!(plain.problems().iter().any(|p| p.contains("redis.ca_file")), "{:?}", plain.problems());
    assert!(redis::client(&plain).is_err());

    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------- ClickHouse

/// A TLS-terminating proxy in front of the local stack's ClickHouse, with
/// `pki`'s server certificate; returns its port.
async fn https_proxy(pki: &TestPki, upstream: String) -> u16 {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&pki.server_cert).and_then(Iterator::collect).expect("the server certificate");
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).expect("the server key");
    let config = rustls::ServerConfig::builder_with_provider(service_kit::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a server configuration");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let port = listener.local_addr().expect("bound address").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                // A refused handshake ends here: the client saw why.
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn clickhouse_over_https_verifies_the_server() {
    let (pki, dir) = pki();
    let local = testing::clickhouse_config();
    let upstream = local.endpoint().trim_start_matches("http://").to_owned();
    let port = https_proxy(&pki, upstream).await;
    let config = |host: &str, ca: &Path| ClickHouseConfig {
        url: format!("https://{host}:{port}"),
        ca_file: Some(ca.to_path_buf()),
        database: "system".into(),
        ..local.clone()
    };

    for host in ["127.0.0.1", "localhost"] {
        let trusted = config(host, &pki.ca_cert);
        assert!(trusted.problems().is_empty(), "{:?}", trusted.problems());
        ClickHouseProbe::new(&trusted).check().await.unwrap_or_else(|e| panic!("SELECT 1 over HTTPS to {host}: {e}"));
        let n: u64 = trusted.client().query("SELECT count() FROM system.one").fetch_one().await.unwrap();
        assert_eq!(n, 1);
    }

    let error = ClickHouseProbe::new(&config("127.0.0.1", &pki.untrusted_ca_cert)).check().await.unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");

    // An unreadable CA fails closed (every request refused) and is a start-up problem.
    let unreadable = config("127.0.0.1", Path::new("/nonexistent/ca.pem"));
    assert!(unreadable.problems().iter().any(|p| p.contains("clickhouse.ca_file")), "{:?}", unreadable.problems());
    let error = ClickHouseProbe::new(&unreadable).check().await.unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");
    // A CA file for a plain http:// endpoint is a configuration mistake.
    let plain = ClickHouseConfig { ca_file: Some(pki.ca_cert.clone()), ..local };
    assert!(plain.problems().iter().any(|p| p.contains("not https://")), "{:?}", plain.problems());

    let _ = std::fs::remove_dir_all(dir);
}
