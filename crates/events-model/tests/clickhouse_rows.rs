//! Against the local ClickHouse (its own database, every migration applied):
//! rows of `EventRow` inserted with the official client read back unchanged.
#![cfg(test)]

use chrono::{TimeZone, Utc};
use events_model::{EVENT_ROW_COLUMNS, EVENTS_TABLE, Event, EventRow};
use service_kit::testing::TestClickHouse;

fn sample_events() -> Vec<Event> {
    let received = Utc.with_ymd_and_hms(2026, 3, 14, 15, 9, 26).unwrap();
    let bodies = [
        r#"{"event_type":"video_start","user_id":"u-1","session_id":"s-1","video_id":"v-1",
            "timestamp":"2026-03-14T15:09:20.123+01:00",
            "properties":{"quality":"720p","bitrate_kbps":2500,"startup_time_ms":850,"device_type":"desktop",
                          "browser":"chrome","country":"FR","cdn":"edge-a","experiment":{"arm":"b"}},
            "metadata":{"app_version":"5.2.0"}}"#,
        r#"{"event_type":"video_progress","session_id":"s-1","video_id":"v-1","timestamp":1773500961000,
            "properties":{"position_seconds":12.5,"duration_seconds":600}}"#,
        r#"{"event_type":"seek","session_id":"s-1","video_id":"v-1",
            "properties":{"seek_from_seconds":12.5,"seek_to_seconds":0}}"#,
        r#"{"event_type":"video_error","user_id":"it's \"quoted\"; -- not sql","session_id":"s-2","video_id":"v-2",
            "properties":{"error_code":"MEDIA_ERR_DECODE","error_message":"decode failed\nline 2 ✓"}}"#,
        r#"{"event_type":"quality_change","session_id":"s-2","video_id":"v-2",
            "properties":{"from_quality":"1080p","to_quality":"480p","fatal":false}}"#,
    ];
    bodies.iter().map(|b| Event::parse_json(b.as_bytes(), received).unwrap()).collect()
}

#[tokio::test]
async fn event_rows_round_trip_through_clickhouse() {
    let db = TestClickHouse::create().await.unwrap();
    let client = db.client();
    let rows: Vec<EventRow> = sample_events().iter().map(EventRow::from).collect();

    let mut insert = client.insert::<EventRow>(EVENTS_TABLE).await.unwrap();
    for row in &rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();

    let sql = format!("SELECT {} FROM {EVENTS_TABLE} ORDER BY timestamp_ms, event_id", EVENT_ROW_COLUMNS.join(", "));
    let mut read: Vec<EventRow> = client.query(&sql).fetch_all().await.unwrap();
    let mut expected = rows.clone();
    expected.sort_by_key(|r| (r.timestamp_ms, r.event_id));
    read.sort_by_key(|r| (r.timestamp_ms, r.event_id));
    assert_eq!(read, expected);

    // The typed columns are queryable as columns, with NULL for absent properties.
    let errors: u64 = client
        .query("SELECT count() FROM events WHERE event_type = ? AND fatal = 1 AND position_seconds IS NULL")
        .bind("video_error")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(errors, 1);

    db.drop().await.unwrap();
}
