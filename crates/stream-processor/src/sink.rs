//! Inserting a batch of events into ClickHouse with the official client (RowBinary).

use std::time::Duration;

use events_model::{EVENTS_TABLE, Event, EventRow};

/// Why an insert failed; every failure is retried (rows are already validated,
/// so a failure is the server's state, not the data's).
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("clickhouse insert failed: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("clickhouse insert timed out after {0:?}")]
    Timeout(Duration),
    #[error("the insert thread panicked")]
    Panicked,
}

pub struct ClickHouseSink {
    client: clickhouse::Client,
    timeout: Duration,
}

impl ClickHouseSink {
    pub fn new(client: clickhouse::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    /// One INSERT of all `events` (each converted to its row as it is
    /// written); returns once ClickHouse has acknowledged it.
    pub async fn insert(&self, events: &[Event]) -> Result<(), InsertError> {
        if events.is_empty() {
            return Ok(());
        }
        let insert = async {
            let mut insert = self.client.insert::<EventRow>(EVENTS_TABLE).await?;
            for event in events {
                insert.write(&EventRow::from(event)).await?;
            }
            insert.end().await
        };
        tokio::time::timeout(self.timeout, insert).await.map_err(|_| InsertError::Timeout(self.timeout))??;
        Ok(())
    }
}
