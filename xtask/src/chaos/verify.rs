//! After a drill: what was stored, what users are told, and how both compare
//! with what the gateway accepted.
//!
//! - stored: the distinct accepted `event_id`s present in ClickHouse `events`
//!   (rows per id above one are duplicate rows, merged away eventually and
//!   deduplicated by every reader: reported, not failed);
//! - counted: `POST /api/metrics/query` `event_count` per video (the custom
//!   query deduplicates by `event_id`), against the accepted events per video:
//!   a count above them is an event counted twice;
//! - the oracle: `GET /api/metrics/video/{id}` for every video of the drill,
//!   field by field against `metrics-oracle` over the accepted events.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use metrics_oracle::{Catalog, Days, Oracle, metrics::date_of_ms};
use serde_json::{Value, json};

/// The distinct ids of the events of `video_prefix`'s videos in `events`, with their rows.
pub async fn stored_ids(clickhouse: &clickhouse::Client, video_prefix: &str) -> Result<HashMap<String, u64>> {
    let rows: Vec<(String, u64)> = clickhouse
        .query("SELECT toString(event_id) AS id, count() FROM events WHERE startsWith(video_id, ?) GROUP BY id")
        .bind(video_prefix)
        .fetch_all()
        .await
        .context("reading the drill's stored event ids")?;
    Ok(rows.into_iter().collect())
}

/// Polls until every id of `expected` is stored (and `ready` finds nothing
/// wrong), or `deadline` passes; returns when it caught up (None: never) and
/// the last look at storage.
pub async fn wait_caught_up<F, Fut>(
    clickhouse: &clickhouse::Client,
    video_prefix: &str,
    expected: &BTreeSet<String>,
    deadline: Duration,
    mut not_ready: F,
) -> (Option<Instant>, HashMap<String, u64>, Vec<String>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let until = Instant::now() + deadline;
    let mut last = (HashMap::new(), Vec::new());
    loop {
        let stored = stored_ids(clickhouse, video_prefix).await;
        let waiting = not_ready().await;
        match stored {
            Ok(stored) => {
                let complete = expected.iter().all(|id| stored.contains_key(id));
                if complete && waiting.is_empty() {
                    return (Some(Instant::now()), stored, waiting);
                }
                last = (stored, waiting);
            }
            Err(err) => last.1 = [vec![format!("{err:#}")], waiting].concat(),
        }
        if Instant::now() > until {
            return (None, last.0, last.1);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What [`recovery`] waits for: the load's journal, the accepted events
/// that must not be stored, whether the load still runs.
pub struct Backlog<'a> {
    pub journal: &'a loadgen::Journal,
    pub dead: &'a BTreeSet<String>,
    pub require_new: bool,
}

/// Time to recover: from `healed_at` until every service is ready, every
/// event accepted up to then is stored (except `dead`), and, while the load
/// still runs (`require_new`), an event accepted after it is stored too (the
/// write path works end to end again). Polled every 250 ms until `deadline`.
pub async fn recovery<F, Fut>(
    clickhouse: &clickhouse::Client,
    video_prefix: &str,
    backlog: Backlog<'_>,
    healed_at: Instant,
    deadline: Duration,
    mut not_ready: F,
) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let Backlog { journal, dead, require_new } = backlog;
    let backlog = journal.accepted_count();
    let until = healed_at + deadline;
    while Instant::now() < until {
        let accepted = journal.accepted_count();
        if !require_new || accepted > backlog {
            let wanted = if require_new { backlog + 1 } else { backlog };
            let ids: BTreeSet<String> = journal
                .accepted_prefix(wanted)
                .iter()
                .filter_map(|e| serde_json::from_slice::<Value>(e).ok()?["event_id"].as_str().map(str::to_owned))
                .filter(|id| !dead.contains(id))
                .collect();
            if let Ok(stored) = stored_ids(clickhouse, video_prefix).await {
                if ids.iter().all(|id| stored.contains_key(id)) && not_ready().await.is_empty() {
                    return Some(healed_at.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Events per video as the custom query counts them (deduplicated by id).
pub async fn counted_per_video(
    http: &reqwest::Client,
    query_api: &str,
    token: &str,
    videos: &[String],
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<String, u64>> {
    let mut counted = BTreeMap::new();
    let iso = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339()).unwrap_or_default();
    // At most 100 values per `in` filter.
    for chunk in videos.chunks(100) {
        let body = json!({
            "metrics": ["event_count"],
            "group_by": ["video_id"],
            "filters": [{"dimension": "video_id", "op": "in", "values": chunk}],
            "start": iso(from_ms),
            "end": iso(to_ms + 1),
            "limit": 1000,
        });
        let answer = ask(http, &format!("{query_api}/api/metrics/query"), token, Some(&body)).await?;
        for row in answer["rows"].as_array().context("custom query answer without rows")? {
            let video = row["video_id"].as_str().context("a row without video_id")?.to_string();
            counted.insert(video, row["event_count"].as_u64().context("a row without event_count")?);
        }
    }
    Ok(counted)
}

/// GET (or POST `body`) with the read token; retries a 5xx or a transport
/// error for up to 20 s (a service just restarted), fails on a 4xx.
pub async fn ask(http: &reqwest::Client, url: &str, token: &str, body: Option<&Value>) -> Result<Value> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let request = match body {
            Some(body) => http.post(url).json(body),
            None => http.get(url),
        };
        let last = match request.bearer_auth(token).send().await {
            Ok(answer) if answer.status().is_success() => return Ok(answer.json().await?),
            Ok(answer) if answer.status().is_client_error() => {
                let status = answer.status();
                anyhow::bail!("{url} answered {status}: {}", answer.text().await.unwrap_or_default());
            }
            Ok(answer) => format!("answered {}: {}", answer.status(), answer.text().await.unwrap_or_default()),
            Err(err) => format!("{err}"),
        };
        if Instant::now() > until {
            anyhow::bail!("{url}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The UTC days the events' client times span.
pub fn days_of(events: &[Value]) -> Option<(Days, i64, i64)> {
    let times: Vec<i64> = events.iter().filter_map(|e| e["timestamp"].as_i64()).collect();
    let (from, to) = (*times.iter().min()?, *times.iter().max()?);
    Some((Days::new(date_of_ms(from), date_of_ms(to)), from, to))
}

/// Every video of `events`, sorted.
pub fn videos_of(events: &[Value]) -> Vec<String> {
    let set: BTreeSet<String> = events.iter().filter_map(|e| e["video_id"].as_str().map(str::to_owned)).collect();
    set.into_iter().collect()
}

/// Differences between the query API's video metrics and the oracle's, per video.
pub async fn compare_with_oracle(
    http: &reqwest::Client,
    query_api: &str,
    token: &str,
    events: &[Value],
) -> Result<(usize, Vec<String>)> {
    let Some((days, _, _)) = days_of(events) else { return Ok((0, Vec::new())) };
    let oracle = Oracle::new(events, Catalog::new()).map_err(anyhow::Error::msg)?;
    let videos = videos_of(events);
    let mut problems = Vec::new();
    for video in &videos {
        let url = format!("{query_api}/api/metrics/video/{video}?{}", days.query());
        match ask(http, &url, token, None).await {
            Ok(got) => {
                problems.extend(oracle.video(video, days).check(&got).into_iter().map(|d| format!("{video}: {d}")))
            }
            Err(err) => problems.push(format!("{video}: no answer: {err:#}")),
        }
    }
    Ok((videos.len(), problems))
}
