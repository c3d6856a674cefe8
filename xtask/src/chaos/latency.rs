//! The hot-key drill's report: how long events took from the gateway to
//! storage, per raw-topic partition, while one session flooded its own.
//!
//! The gateway keys messages by `session_id` and uses librdkafka's default
//! partitioner (`consistent_random`: CRC-32 of the key modulo the partition
//! count), so each stored event's partition follows from its session. The
//! latency is `inserted_at` (whole seconds, ClickHouse 18.16 has no
//! sub-second `DateTime`) minus `received_at_ms`: a resolution of 1 s.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

/// CRC-32 (IEEE 802.3, as zlib and librdkafka compute it).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// The raw-topic partition of a session's events.
pub fn partition_of(session_id: &str, partitions: i32) -> i32 {
    (crc32(session_id.as_bytes()) % partitions.max(1) as u32) as i32
}

/// Per partition: events, p50, p99 and max latency in ms.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLatency {
    pub partition: i32,
    pub events: usize,
    pub p50_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
}

/// Latencies of the drill's events received in `[from_ms, to_ms]`, per partition.
pub async fn per_partition(
    clickhouse: &clickhouse::Client,
    video_prefix: &str,
    from_ms: i64,
    to_ms: i64,
    partitions: i32,
) -> Result<Vec<PartitionLatency>> {
    let rows: Vec<(String, i64)> = clickhouse
        .query(
            "SELECT session_id, toInt64(min(inserted_at)) * 1000 - toInt64(any(received_at_ms)) FROM events \
             WHERE startsWith(video_id, ?) AND received_at_ms BETWEEN ? AND ? GROUP BY event_id, session_id",
        )
        .bind(video_prefix)
        .bind(from_ms.max(0) as u64)
        .bind(to_ms.max(0) as u64)
        .fetch_all()
        .await
        .context("reading the drill's storage latencies")?;
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (session, ms) in rows {
        by_partition.entry(partition_of(&session, partitions)).or_default().push(ms.max(0));
    }
    Ok(by_partition
        .into_iter()
        .map(|(partition, mut ms)| {
            ms.sort_unstable();
            let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
            PartitionLatency { partition, events: ms.len(), p50_ms: at(0.5), p99_ms: at(0.99), max_ms: at(1.0) }
        })
        .collect())
}

/// `partition 3 (hot): 1,234 events, p50 …` lines.
pub fn describe(latencies: &[PartitionLatency], hot: i32) -> Vec<String> {
    latencies
        .iter()
        .map(|l| {
            format!(
                "partition {}{}: {} events stored, gateway to storage p50 {:.0} s, p99 {:.0} s, max {:.0} s (1 s resolution)",
                l.partition,
                if l.partition == hot { " (hot)" } else { "" },
                l.events,
                l.p50_ms as f64 / 1000.0,
                l.p99_ms as f64 / 1000.0,
                l.max_ms as f64 / 1000.0
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_zlib_s() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
        assert!((0..6).contains(&partition_of("sess_00000000000000ab", 6)));
    }
}
