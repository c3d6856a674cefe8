//! The write path end to end against the local stack: events POSTed to the real
//! ingest-gateway, stored by the real stream-processor (both in-process, with
//! their own topics, consumer group and ClickHouse database).
#![cfg(test)]

mod support;

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use serde_json::{Value, json};
use service_kit::testing;
use support::{start_gateway, start_processor};

fn event(i: usize) -> Value {
    json!({
        "event_id": uuid::Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 + i as u128).to_string(),
        "event_type": "video_progress",
        "user_id": format!("u{}", i % 101),
        "session_id": format!("s{}", i % 1_009),
        "video_id": format!("v{}", i % 17),
        "properties": {"position_seconds": (i % 3_600) as f64, "bitrate_kbps": 2_500},
    })
}

async fn post_batch(http: &reqwest::Client, gateway: SocketAddr, batch: &[Value]) -> Value {
    let answer = http.post(format!("http://{gateway}/api/events/batch")).json(batch).send().await.unwrap();
    assert_eq!(answer.status(), 202);
    answer.json().await.unwrap()
}

async fn counts(client: &clickhouse::Client) -> anyhow::Result<(u64, u64)> {
    Ok(client.query("SELECT count(), uniqExact(event_id) FROM events").fetch_one::<(u64, u64)>().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_events_are_stored_exactly_once() {
    const TOTAL: usize = 100_000;
    let kafka = testing::kafka_config();
    let db = testing::TestClickHouse::create().await.unwrap();
    let postgres = testing::TestPostgres::create().await.unwrap();
    let gateway = start_gateway(&kafka, &postgres.config, 2).await;
    let processor = start_processor(&kafka, &db.config);
    let http = postgres.keys().await.unwrap().ingest_client();
    let client = db.client();

    // 100,000 valid events in batches of 1,000, four requests at a time.
    let events: Vec<Value> = (0..TOTAL).map(event).collect();
    let batches: Vec<&[Value]> = events.chunks(1_000).collect();
    for group in batches.chunks(4) {
        let answers = futures::future::join_all(group.iter().map(|b| post_batch(&http, gateway.addr, b))).await;
        for answer in answers {
            assert_eq!(answer["accepted"], 1_000, "{answer}");
        }
    }

    // The same batch POSTed again (a client retry) is accepted and counted once.
    let retried = post_batch(&http, gateway.addr, batches[7]).await;
    assert_eq!(retried["accepted"], 1_000);

    // A batch mixing valid and invalid events stores exactly the valid ones and
    // reports each invalid one by index and field.
    let mut mixed: Vec<Value> = (TOTAL..TOTAL + 10).map(event).collect();
    mixed[2]["properties"]["position_seconds"] = json!(-5);
    mixed[5].as_object_mut().unwrap().remove("video_id");
    mixed[8]["event_type"] = json!("video_explode");
    let answer = post_batch(&http, gateway.addr, &mixed).await;
    assert_eq!(answer["accepted"], 7);
    let rejected: Vec<(u64, String)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["errors"][0]["field"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        rejected,
        [(2, "properties.position_seconds".to_string()), (5, "video_id".to_string()), (8, "event_type".to_string())]
    );
    let expected_valid: HashSet<String> =
        [0, 1, 3, 4, 6, 7, 9].iter().map(|&i| mixed[i]["event_id"].to_string()).collect();

    let expected = (TOTAL + 7) as u64;
    testing::eventually(Duration::from_secs(120), || async {
        let (_, distinct) = counts(&client).await?;
        anyhow::ensure!(distinct == expected, "{distinct} of {expected} distinct events stored");
        Ok(())
    })
    .await
    .unwrap();
    let deduplicated: u64 = client.query("SELECT count() FROM events FINAL").fetch_one().await.unwrap();
    assert_eq!(deduplicated, expected);

    let stored_mixed: Vec<String> = client
        .query("SELECT toString(event_id) FROM events WHERE has(?, toString(event_id))")
        .bind(mixed.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect::<Vec<_>>())
        .fetch_all()
        .await
        .unwrap();
    let stored_mixed: HashSet<String> = stored_mixed.into_iter().map(|id| format!("\"{id}\"")).collect();
    assert_eq!(stored_mixed, expected_valid);

    processor.stop().await.unwrap();
    gateway.stop().await.unwrap();
    db.drop().await.unwrap();
    postgres.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_and_a_replica_leaving_mid_load_store_each_event_once() {
    const TOTAL: usize = 40_000;
    let kafka = testing::kafka_config();
    let db = testing::TestClickHouse::create().await.unwrap();
    let postgres = testing::TestPostgres::create().await.unwrap();
    let gateway = start_gateway(&kafka, &postgres.config, 2).await;
    let first = start_processor(&kafka, &db.config);
    let second = start_processor(&kafka, &db.config);
    let http = postgres.keys().await.unwrap().ingest_client();
    let client = db.client();

    let events: Vec<Value> = (0..TOTAL).map(event).collect();
    let (early, late) = events.split_at(TOTAL / 2);
    for batch in early.chunks(1_000) {
        post_batch(&http, gateway.addr, batch).await;
    }
    testing::eventually(Duration::from_secs(60), || async {
        let (rows, _) = counts(&client).await?;
        anyhow::ensure!(rows > 0, "nothing stored yet");
        Ok(())
    })
    .await
    .unwrap();

    // One replica leaves (its partitions are revoked and reassigned) while the load goes on.
    let leaving = tokio::spawn(first.stop());
    for batch in late.chunks(1_000) {
        post_batch(&http, gateway.addr, batch).await;
    }
    leaving.await.unwrap().unwrap();

    testing::eventually(Duration::from_secs(120), || async {
        let (rows, distinct) = counts(&client).await?;
        anyhow::ensure!(distinct == TOTAL as u64, "{distinct} distinct ({rows} rows) stored so far");
        Ok(())
    })
    .await
    .unwrap();
    let deduplicated: u64 = client.query("SELECT count() FROM events FINAL").fetch_one().await.unwrap();
    assert_eq!(deduplicated, TOTAL as u64);

    second.stop().await.unwrap();
    gateway.stop().await.unwrap();
    db.drop().await.unwrap();
    postgres.drop().await.unwrap();
}
