//! Inserting a batch of events into ClickHouse with the official client
//! (RowBinary), and telling apart the failures worth retrying from the
//! refusals that no retry can fix.

use std::time::Duration;

use events_model::{EVENTS_TABLE, Event, EventRow};

/// Why an insert failed.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("clickhouse insert failed: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("clickhouse insert timed out after {0:?}")]
    Timeout(Duration),
    #[error("the insert thread panicked")]
    Panicked,
}

/// What a failed insert means for its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server's state (unreachable, overloaded, out of memory, too many
    /// parts, a missing table): the same rows will go in once it recovers.
    Transient,
    /// The rows themselves: ClickHouse refuses this block whatever its state
    /// (a value it cannot take, or more partitions than one insert may
    /// touch). Some rows of the block cause it; the others can be stored.
    Permanent(Refusal),
}

/// A permanent refusal: ClickHouse's error code (when it sent one) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Option<u32>,
    pub message: String,
}

impl Refusal {
    /// `code 252: Too many partitions …`, for logs and dead letters.
    pub fn describe(&self) -> String {
        match self.code {
            Some(code) => format!("clickhouse code {code}: {}", self.message),
            None => format!("clickhouse client: {}", self.message),
        }
    }
}

/// ClickHouse error codes that a block's *values* cause: parsing, types,
/// conversions, sizes. Numbers from ClickHouse's `ErrorCodes.cpp` (stable
/// across versions, 18.16 included).
const ROW_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    25,  // CANNOT_PARSE_ESCAPE_SEQUENCE
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    128, // TOO_LARGE_ARRAY_SIZE
    131, // TOO_LARGE_STRING_SIZE
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
];

/// Code 252 (`TOO_MANY_PARTS`) covers two cases: merges behind (transient)
/// and a block spanning more than `max_partitions_per_insert_block`
/// partitions (permanent for that block; its halves may well go in).
const TOO_MANY_PARTS: u32 = 252;
const PARTITION_LIMIT_MESSAGE: &str = "too many partitions for single insert block";

impl InsertError {
    /// Permanent only for the codes a block's values cause (and the
    /// partition limit); everything else, unknown codes included, is retried,
    /// so an unfamiliar server error can delay rows but never drop them.
    ///
    /// A missing table, column or database is transient on purpose: no row
    /// causes it, and dead-lettering would move the whole stream to the DLQ
    /// because of a deployment mistake; it is retried (and logged) until the
    /// schema is there.
    pub fn failure(&self) -> Failure {
        let InsertError::ClickHouse(error) = self else { return Failure::Transient };
        match error {
            clickhouse::error::Error::BadResponse(text) => classify_server_error(text),
            // The client could not encode a row (a value RowBinary cannot carry).
            clickhouse::error::Error::Custom(message) => {
                Failure::Permanent(Refusal { code: None, message: message.clone() })
            }
            _ => Failure::Transient,
        }
    }

    /// A bounded label for metrics: `transient` or `permanent`.
    pub fn class(&self) -> &'static str {
        match self.failure() {
            Failure::Transient => "transient",
            Failure::Permanent(_) => "permanent",
        }
    }
}

/// Classifies a ClickHouse exception text (`Code: 252. DB::Exception: …` on
/// current servers, `Code: 252, e.displayText() = DB::Exception: …` on 18.16,
/// or just `Code: 252` when the body was empty).
pub fn classify_server_error(text: &str) -> Failure {
    let Some(code) = error_code(text) else { return Failure::Transient };
    let permanent = ROW_CODES.contains(&code)
        || (code == TOO_MANY_PARTS && text.to_ascii_lowercase().contains(PARTITION_LIMIT_MESSAGE));
    if permanent {
        Failure::Permanent(Refusal { code: Some(code), message: text.trim().to_string() })
    } else {
        Failure::Transient
    }
}

/// The number after the first `Code:` of an exception text.
fn error_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code:")? + "Code:".len()..];
    let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
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
    pub async fn insert<'a>(&self, events: impl IntoIterator<Item = &'a Event>) -> Result<(), InsertError> {
        let mut events = events.into_iter().peekable();
        if events.peek().is_none() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server(text: &str) -> Failure {
        InsertError::ClickHouse(clickhouse::error::Error::BadResponse(text.into())).failure()
    }

    #[test]
    fn the_partition_limit_is_permanent_and_too_many_parts_is_not() {
        // The message of chDB 26.9 for an INSERT spanning 120 monthly partitions.
        let limit = "Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100). \
                     The limit is controlled by 'max_partitions_per_insert_block' setting. (TOO_MANY_PARTS)";
        assert!(matches!(server(limit), Failure::Permanent(Refusal { code: Some(252), .. })));
        let merges = "Code: 252. DB::Exception: Too many parts (300 with average size of 1.00 MiB). Merges are \
                      processing significantly slower than inserts. (TOO_MANY_PARTS)";
        assert_eq!(server(merges), Failure::Transient);
    }

    #[test]
    fn value_errors_are_permanent_in_both_server_formats() {
        let current = "Code: 53. DB::Exception: Type mismatch in VALUES section. (TYPE_MISMATCH) (version 26.9.1)";
        let old = "Code: 70, e.displayText() = DB::Exception: Value out of range, e.what() = DB::Exception";
        assert!(matches!(server(current), Failure::Permanent(Refusal { code: Some(53), .. })));
        assert!(matches!(server(old), Failure::Permanent(Refusal { code: Some(70), .. })));
        assert!(matches!(server("Code: 131"), Failure::Permanent(Refusal { code: Some(131), .. })));
    }

    #[test]
    fn server_state_errors_and_unknown_codes_are_transient() {
        for text in [
            "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
            "Code: 60. DB::Exception: Table analytics.events does not exist. (UNKNOWN_TABLE)",
            "Code: 210. DB::NetException: Connection refused (NETWORK_ERROR)",
            "Code: 9999. DB::Exception: something new",
            "502 Bad Gateway",
            "",
        ] {
            assert_eq!(server(text), Failure::Transient, "{text}");
        }
        assert_eq!(InsertError::Timeout(Duration::from_secs(1)).failure(), Failure::Transient);
        assert_eq!(InsertError::Panicked.class(), "transient");
    }

    #[test]
    fn a_refusal_describes_its_code_and_message() {
        let Failure::Permanent(refusal) = server("Code: 6. DB::Exception: Cannot parse text") else { panic!() };
        assert_eq!(refusal.describe(), "clickhouse code 6: Code: 6. DB::Exception: Cannot parse text");
    }
}
