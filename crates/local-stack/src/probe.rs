//! Real requests proving a component answers: a Kafka metadata request, a
//! ClickHouse query, a PostgreSQL query, a Redis PING, a binary's `/ready`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

/// Budget of one probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

async fn within<T>(what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    timeout(PROBE_TIMEOUT, fut).await.map_err(|_| anyhow!("{what}: no answer within {PROBE_TIMEOUT:?}"))?
}

/// Why [`until_answers`] gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAnswering {
    /// The process exited before it answered.
    Exited,
    /// The deadline passed; the last probe's error.
    TimedOut(String),
}

/// Polls `probe` until it answers, failing early when the process `pid`
/// exits and late once `deadline` has passed; `waiting` sees the error of
/// every unanswered attempt (for progress messages).
pub async fn until_answers<F, Fut>(
    pid: Option<u32>,
    deadline: Duration,
    mut probe: F,
    mut waiting: impl FnMut(&str),
) -> Result<String, NotAnswering>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<String>>,
{
    let started = Instant::now();
    loop {
        let last_error = match probe().await {
            Ok(detail) => return Ok(detail),
            Err(err) => format!("{err:#}"),
        };
        if pid.is_some_and(|pid| !crate::process::is_running(pid)) {
            return Err(NotAnswering::Exited);
        }
        if started.elapsed() > deadline {
            return Err(NotAnswering::TimedOut(last_error));
        }
        waiting(&last_error);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub async fn port_in_use(port: u16) -> bool {
    matches!(timeout(Duration::from_secs(1), TcpStream::connect(("127.0.0.1", port))).await, Ok(Ok(_)))
}

// ---------------------------------------------------------------- Kafka ---

const API_METADATA: i16 = 3;
const API_VERSIONS: i16 = 18;
const CLIENT_ID: &str = "local-stack-probe";

/// Asks the broker for its supported API versions, then for cluster metadata
/// (brokers and controller), speaking the Kafka wire protocol directly.
pub async fn kafka(addr: &str) -> Result<String> {
    within("Kafka metadata request", async {
        let mut stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;

        // ApiVersions v0: supported by every broker, empty body.
        let response = kafka_call(&mut stream, API_VERSIONS, 0, 1, &[]).await?;
        let mut r = Reader::new(&response);
        let error = r.i16()?;
        ensure!(error == 0, "ApiVersions answered error code {error}");
        let mut metadata_range = None;
        for _ in 0..r.array_len()? {
            let (key, min, max) = (r.i16()?, r.i16()?, r.i16()?);
            if key == API_METADATA {
                metadata_range = Some((min, max));
            }
        }
        let (min, max) = metadata_range.context("broker does not offer the Metadata API")?;
        // v4..=v8 share the non-flexible encoding handled below.
        let version = min.max(4);
        ensure!(version <= max.min(8), "broker supports Metadata v{min}..v{max}; this probe speaks v4..v8");

        // Metadata: empty topic list (brokers and controller only).
        let mut body = Vec::new();
        body.extend_from_slice(&0i32.to_be_bytes()); // topics: empty array
        body.push(0); // allow_auto_topic_creation = false
        if version >= 8 {
            body.extend_from_slice(&[0, 0]); // include cluster/topic authorized operations = false
        }
        let response = kafka_call(&mut stream, API_METADATA, version, 2, &body).await?;
        let mut r = Reader::new(&response);
        let _throttle_ms = r.i32()?;
        let brokers = r.array_len()?;
        let mut listed = Vec::new();
        for _ in 0..brokers {
            let node = r.i32()?;
            let host = r.string()?.unwrap_or_default();
            let port = r.i32()?;
            let _rack = r.string()?;
            listed.push(format!("{node}@{host}:{port}"));
        }
        let cluster = r.string()?.unwrap_or_default();
        let controller = r.i32()?;
        ensure!(!listed.is_empty(), "metadata lists no broker");
        ensure!(controller >= 0, "metadata names no active controller yet");
        Ok(format!("cluster {cluster}, brokers {}, controller {controller}", listed.join(",")))
    })
    .await
}

async fn kafka_call(stream: &mut TcpStream, api: i16, version: i16, correlation: i32, body: &[u8]) -> Result<Vec<u8>> {
    // Request header v1: api key, version, correlation id, client id.
    let mut frame = Vec::with_capacity(64 + body.len());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&api.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&correlation.to_be_bytes());
    frame.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
    frame.extend_from_slice(CLIENT_ID.as_bytes());
    frame.extend_from_slice(body);
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    stream.write_all(&frame).await.context("sending request")?;

    let size = stream.read_i32().await.context("reading response size (the broker closed the connection)")?;
    ensure!((4..=16 << 20).contains(&size), "implausible response size {size}");
    let mut response = vec![0; size as usize];
    stream.read_exact(&mut response).await.context("reading response")?;
    let got = i32::from_be_bytes(response[..4].try_into().expect("4 bytes"));
    ensure!(got == correlation, "response correlation id {got}, expected {correlation}");
    response.drain(..4);
    Ok(response)
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            bail!("truncated response");
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }

    fn array_len(&mut self) -> Result<usize> {
        Ok(self.i32()?.max(0) as usize)
    }

    fn string(&mut self) -> Result<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(String::from_utf8_lossy(self.take(len as usize)?).into_owned()))
    }
}

// ----------------------------------------------------------- ClickHouse ---

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(PROBE_TIMEOUT).build().expect("HTTP client")
}

/// `SELECT 1` over the HTTP interface; returns the server version.
pub async fn clickhouse(endpoint: &str) -> Result<String> {
    let body = clickhouse_query(endpoint, "SELECT 1, version()").await?;
    match body.split_once('\t') {
        Some(("1", version)) => Ok(format!("version {version}")),
        _ => bail!("unexpected answer to SELECT 1: {body:?}"),
    }
}

/// Runs `sql` over the HTTP interface and returns the answer (tab-separated), trimmed.
pub async fn clickhouse_query(endpoint: &str, sql: &str) -> Result<String> {
    within("ClickHouse query", async {
        let response = http_client()
            .post(format!("{}/", endpoint.trim_end_matches('/')))
            .body(sql.to_string())
            .send()
            .await
            .with_context(|| format!("POST {endpoint} {sql}"))?;
        let status = response.status();
        let body = response.text().await.context("reading the answer")?;
        ensure!(status.is_success(), "HTTP {status}: {}", body.trim());
        Ok(body.trim().to_string())
    })
    .await
}

/// Polls `sql` on the ClickHouse at `endpoint` until it answers `expected`
/// (replication, `ON CLUSTER` DDL reaching a server); after `deadline` fails
/// with the last answer.
pub async fn clickhouse_until(endpoint: &str, sql: &str, expected: &str, deadline: Duration) -> Result<()> {
    let check = || async move {
        let answer = clickhouse_query(endpoint, sql).await?;
        ensure!(answer == expected, "answered {answer:?}, not {expected:?}");
        Ok(answer)
    };
    match until_answers(None, deadline, check, |_| {}).await {
        Ok(_) => Ok(()),
        Err(NotAnswering::TimedOut(last)) => bail!("{endpoint}: {sql}: {last} (polled for {deadline:?})"),
        Err(NotAnswering::Exited) => bail!("{endpoint}: {sql}: gave up"),
    }
}

// ----------------------------------------------------------- PostgreSQL ---

/// Connects with `url` and runs a query.
pub async fn postgres(url: &str) -> Result<String> {
    within("PostgreSQL query", async {
        let mut config: tokio_postgres::Config = url.parse().context("parsing the PostgreSQL URL")?;
        config.connect_timeout(PROBE_TIMEOUT);
        postgres_query(&config).await
    })
    .await
}

/// Runs `SELECT version()` through `config`; errors carry the server's message.
pub async fn postgres_query(config: &tokio_postgres::Config) -> Result<String> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(pg_error)?;
    let task = tokio::spawn(connection);
    let row = client.query_one("SELECT current_user, split_part(version(), ' ', 2)", &[]).await.map_err(pg_error)?;
    let (user, version): (String, String) = (row.get(0), row.get(1));
    drop(client);
    let _ = task.await;
    Ok(format!("version {version} as {user}"))
}

/// The server's message rather than tokio-postgres's terse "db error".
pub fn pg_error(err: tokio_postgres::Error) -> anyhow::Error {
    match err.as_db_error() {
        Some(db) => anyhow!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code()),
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(inner) = source {
                text.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            anyhow!(text)
        }
    }
}

// ---------------------------------------------------------------- Redis ---

/// Sends `PING` and expects `+PONG`.
pub async fn redis(addr: &str) -> Result<String> {
    within("Redis PING", async {
        let mut stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.context("sending PING")?;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.context("reading the answer")?;
        let answer = String::from_utf8_lossy(&buf[..n]);
        ensure!(answer.starts_with("+PONG"), "unexpected answer to PING: {:?}", answer.trim());
        Ok("PONG".to_string())
    })
    .await
}

// ------------------------------------------------------------ ZooKeeper ---

/// Sends the `srvr` four-letter command and expects the server's mode
/// (`standalone`, `leader`, `follower`): a node that answers it serves clients.
pub async fn zookeeper(addr: &str) -> Result<String> {
    within("ZooKeeper srvr", async {
        let mut stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.write_all(b"srvr").await.context("sending srvr")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.context("reading the answer")?;
        let field = |name: &str| answer.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        match (field("Mode:"), field("Zookeeper version:")) {
            (Some(mode), version) => {
                let version = version.and_then(|v| v.split(['-', ',']).next()).unwrap_or("?");
                Ok(format!("version {version}, {mode}"))
            }
            (None, _) if answer.contains("not currently serving") => bail!("not serving requests yet"),
            (None, _) => bail!("unexpected answer to srvr: {:?}", answer.trim()),
        }
    })
    .await
}

// ------------------------------------------------------------- binaries ---

/// `GET http://127.0.0.1:<port>/ready` must answer 200.
pub async fn ready(port: u16) -> Result<String> {
    if !port_in_use(port).await {
        bail!("nothing listens on 127.0.0.1:{port}");
    }
    within("GET /ready", async {
        let url = format!("http://127.0.0.1:{port}/ready");
        let response = http_client().get(&url).send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if status.as_u16() == 200 {
            return Ok("ready".to_string());
        }
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        bail!("GET {url} answered {status}: {}", body.trim())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_decodes_kafka_primitives_and_null_strings() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&7i16.to_be_bytes());
        bytes.extend_from_slice(&(-1i16).to_be_bytes()); // null string
        bytes.extend_from_slice(&3i16.to_be_bytes());
        bytes.extend_from_slice(b"abc");
        bytes.extend_from_slice(&42i32.to_be_bytes());
        let mut r = Reader::new(&bytes);
        assert_eq!(r.i16().unwrap(), 7);
        assert_eq!(r.string().unwrap(), None);
        assert_eq!(r.string().unwrap().as_deref(), Some("abc"));
        assert_eq!(r.i32().unwrap(), 42);
        assert!(r.i16().is_err(), "reading past the end must fail, not panic");
    }

    #[tokio::test]
    async fn probes_of_a_closed_port_fail_quickly() {
        // A socket bound but never listening holds the port for the whole
        // test, so no concurrent test (nor a self-connect from an ephemeral
        // port) can answer on it, and a connect to it is refused.
        let holder = tokio::net::TcpSocket::new_v4().unwrap();
        holder.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = holder.local_addr().unwrap().port();
        assert!(!port_in_use(port).await);
        assert!(kafka(&format!("127.0.0.1:{port}")).await.is_err());
        assert!(redis(&format!("127.0.0.1:{port}")).await.is_err());
        let err = ready(port).await.unwrap_err();
        assert!(err.to_string().contains("nothing listens"), "{err}");
    }
}
