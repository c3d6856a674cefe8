//! Fault injection for tests and drills: a small HTTP proxy in front of a
//! real ClickHouse that refuses chosen rows the way a current server does.
//!
//! The local stack runs ClickHouse 18.16, which lacks limits a current
//! server enforces (`max_partitions_per_insert_block`: an INSERT spanning
//! more than 100 partitions fails with code 252). To drive the processor's
//! permanent-error path on it, [`ClickHouseFaults`] forwards every request
//! to the real server except an INSERT whose rows contain a marker, which it
//! answers exactly as ClickHouse 26.9 answers the partition limit (HTTP 500,
//! `X-ClickHouse-Exception-Code: 252`, the server's own message). A block
//! without the marker is stored by the real server, so a test sees real
//! storage around the injected refusal.

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// What chDB 26.9 answers to an INSERT spanning 120 monthly partitions.
pub const PARTITION_LIMIT_EXCEPTION: &str = "Code: 252. DB::Exception: Too many partitions for single INSERT block \
     (more than 100). The limit is controlled by 'max_partitions_per_insert_block' setting. Large number of \
     partitions is a common misconception. It will lead to severe negative performance impact, including slow \
     server startup, slow INSERT queries and slow SELECT queries. Recommended total number of partitions for a \
     table is under 1000..10000. Please note, that partitioning is not intended to speed up SELECT queries (ORDER \
     BY key is sufficient to make range queries fast). Partitions are intended for data manipulation (DROP \
     PARTITION, etc). (TOO_MANY_PARTS) (version 26.9.1.1 (official build))";

struct Rules {
    upstream: String,
    marker: Vec<u8>,
    client: reqwest::Client,
    refused: AtomicU64,
    forwarded: AtomicU64,
}

/// A running proxy; stops when dropped.
pub struct ClickHouseFaults {
    url: String,
    rules: Arc<Rules>,
    handle: actix_web::dev::ServerHandle,
}

impl ClickHouseFaults {
    /// Listens on 127.0.0.1:0 in front of `upstream` (`http://host:port`)
    /// and refuses every INSERT whose rows contain `marker` (searched in the
    /// decompressed body) with the partition-limit exception.
    pub fn refusing_rows_containing(upstream: &str, marker: &[u8]) -> std::io::Result<Self> {
        let rules = Arc::new(Rules {
            upstream: upstream.trim_end_matches('/').to_string(),
            marker: marker.to_vec(),
            client: reqwest::Client::new(),
            refused: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = web::Data::from(rules.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(1 << 30))
                .default_service(web::to(proxy))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self { url, rules, handle })
    }

    /// The proxy's URL, to use as the ClickHouse URL of the service under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// INSERTs refused so far.
    pub fn refused(&self) -> u64 {
        self.rules.refused.load(Ordering::SeqCst)
    }

    /// Requests passed to the real server so far.
    pub fn forwarded(&self) -> u64 {
        self.rules.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for ClickHouseFaults {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { handle.stop(false).await });
        }
    }
}

async fn proxy(req: HttpRequest, body: web::Bytes, rules: web::Data<Rules>) -> HttpResponse {
    let query = req.query_string();
    let is_insert =
        query_param(query, "query").is_some_and(|q| q.trim_start().to_ascii_uppercase().starts_with("INSERT"));
    if is_insert && contains_marker(&body, query_param(query, "decompress").as_deref() == Some("1"), &rules.marker) {
        rules.refused.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::InternalServerError()
            .insert_header(("X-ClickHouse-Exception-Code", "252"))
            .content_type("text/plain; charset=UTF-8")
            .body(format!("{PARTITION_LIMIT_EXCEPTION}\n"));
    }
    rules.forwarded.fetch_add(1, Ordering::SeqCst);
    let target = format!("{}{}", rules.upstream, req.uri().path_and_query().map_or("/", |pq| pq.as_str()));
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut request = rules.client.request(method, target).body(body);
    for (name, value) in req.headers() {
        if name != "host" && name != "content-length" && name != "transfer-encoding" {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return HttpResponse::BadGateway().body(format!("proxy: {error}")),
    };
    let mut answer = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(response.status().as_u16())
            .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY),
    );
    for (name, value) in response.headers() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            answer.insert_header((name.as_str(), value.as_bytes()));
        }
    }
    match response.bytes().await {
        Ok(bytes) => answer.body(bytes),
        Err(error) => HttpResponse::BadGateway().body(format!("proxy: {error}")),
    }
}

/// A URL query parameter, percent-decoded (`+` as space).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the rows of an INSERT body contain `marker`; `compressed` bodies
/// are in ClickHouse's native block framing (see [`decompress`]).
fn contains_marker(body: &[u8], compressed: bool, marker: &[u8]) -> bool {
    let plain = if compressed { decompress(body) } else { Some(body.to_vec()) };
    plain.is_some_and(|plain| plain.windows(marker.len()).any(|window| window == marker))
}

/// Decodes ClickHouse's compressed blocks: each is a 16-byte checksum, a
/// method byte (`0x82` LZ4, `0x02` none), the block's size with its 9-byte
/// header and the decompressed size (both little-endian `u32`), then the data.
fn decompress(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut plain = Vec::new();
    while !body.is_empty() {
        let header = body.get(16..25)?;
        let method = header[0];
        let compressed = u32::from_le_bytes(header[1..5].try_into().ok()?) as usize;
        let size = u32::from_le_bytes(header[5..9].try_into().ok()?) as usize;
        let data = body.get(25..16 + compressed)?;
        match method {
            0x82 => plain.extend(lz4_flex::block::decompress(data, size).ok()?),
            0x02 => plain.extend_from_slice(data),
            _ => return None,
        }
        body = &body[16 + compressed..];
    }
    Some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let query = "database=a&query=INSERT%20INTO%20events+FORMAT+RowBinary&decompress=1";
        assert_eq!(query_param(query, "query").as_deref(), Some("INSERT INTO events FORMAT RowBinary"));
        assert_eq!(query_param(query, "decompress").as_deref(), Some("1"));
        assert_eq!(query_param(query, "missing"), None);
    }

    #[test]
    fn the_marker_is_found_in_compressed_blocks() {
        let rows = b"...video poison-row-1 ...".repeat(50);
        let data = lz4_flex::block::compress(&rows);
        let mut block = vec![0u8; 16];
        block.push(0x82);
        block.extend(u32::try_from(data.len() + 9).unwrap().to_le_bytes());
        block.extend(u32::try_from(rows.len()).unwrap().to_le_bytes());
        block.extend(&data);
        let twice = [block.clone(), block].concat();
        assert!(contains_marker(&twice, true, b"poison-row"));
        assert!(!contains_marker(&twice, true, b"healthy"));
        assert!(!contains_marker(&twice[..20], true, b"poison-row"), "a truncated body finds nothing");
        assert!(contains_marker(b"plain poison-row", false, b"poison-row"));
    }
}
