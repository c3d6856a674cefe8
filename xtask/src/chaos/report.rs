//! One row per drill, and the table they make.

use std::time::Duration;

/// The outcome of one drill.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub drill: String,
    /// Distinct events the gateway answered 202 for.
    pub accepted: usize,
    /// Distinct accepted events in ClickHouse (or, for the expected ones, in the DLQ).
    pub stored: usize,
    /// Accepted and neither stored nor an expected dead letter.
    pub lost: usize,
    /// Events users are shown more than once (custom-query counts above the accepted events).
    pub counted_twice: u64,
    /// Ids with more than one row in `events` (readers deduplicate them; merges remove them).
    pub duplicate_rows: usize,
    /// Expected dead letters found in the dead-letter topic.
    pub dead_lettered: usize,
    /// From the fault's end until everything accepted was stored and every service was ready.
    pub recovery: Option<Duration>,
    /// Videos whose metrics were compared with the oracle, and the differences.
    pub videos: usize,
    pub differences: usize,
    pub notes: Vec<String>,
    pub problems: Vec<String>,
}

impl Row {
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.counted_twice == 0 && self.differences == 0 && self.problems.is_empty()
    }

    fn cells(&self) -> [String; 8] {
        let recovery = match self.recovery {
            Some(d) => format!("{:.1} s", d.as_secs_f64()),
            None => "never".to_string(),
        };
        let stored = if self.dead_lettered > 0 {
            format!("{} (+{} DLQ)", self.stored - self.dead_lettered, self.dead_lettered)
        } else {
            self.stored.to_string()
        };
        [
            self.drill.clone(),
            self.accepted.to_string(),
            stored,
            self.lost.to_string(),
            self.counted_twice.to_string(),
            recovery,
            format!("{}/{}", self.videos - self.differences.min(self.videos), self.videos),
            if self.passed() { "PASS".to_string() } else { "FAIL".to_string() },
        ]
    }
}

const HEADERS: [&str; 8] =
    ["drill", "accepted", "stored", "lost", "counted twice", "time to recover", "videos = oracle", "result"];

/// The table as Markdown (readable as is in a terminal, pasteable into docs).
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 8]> = rows.iter().map(Row::cells).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, width))| if i == 0 { format!("{cell:<width$}") } else { format!("{cell:>width$}") })
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let mut out = vec![line(&HEADERS.map(String::from))];
    // Markdown: the first column left-aligned, the figures right-aligned.
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| if i == 0 { "-".repeat(w + 2) } else { format!("{}:", "-".repeat(w + 1)) })
        .collect();
    out.push(format!("|{}|", rule.join("|")));
    out.extend(cells.iter().map(|row| line(row)));
    out.join("\n")
}

/// The notes and problems of every drill, below the table.
pub fn details(rows: &[Row]) -> String {
    let mut out = Vec::new();
    for row in rows {
        if row.notes.is_empty() && row.problems.is_empty() {
            continue;
        }
        out.push(format!("{}:", row.drill));
        out.extend(row.notes.iter().map(|n| format!("  - {n}")));
        out.extend(row.problems.iter().map(|p| format!("  ✗ {p}")));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_drill_and_a_verdict() {
        let ok = Row {
            drill: "kill-stream-processor".into(),
            accepted: 2_400,
            stored: 2_400,
            recovery: Some(Duration::from_millis(3_300)),
            videos: 12,
            ..Row::default()
        };
        let poison = Row {
            drill: "poison-batch".into(),
            accepted: 1_020,
            stored: 1_020,
            dead_lettered: 1,
            recovery: None,
            videos: 13,
            differences: 2,
            problems: vec!["x".into()],
            ..Row::default()
        };
        assert!(ok.passed() && !poison.passed());
        let text = table(&[ok, poison]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("| drill ") && lines[0].contains("counted twice"), "{text}");
        assert!(lines[2].contains(" 3.3 s |") && lines[2].ends_with(" PASS |"), "{text}");
        assert!(
            lines[3].contains("1019 (+1 DLQ)") && lines[3].contains("never") && lines[3].contains("11/13"),
            "{text}"
        );
        assert!(lines[3].ends_with(" FAIL |"), "{text}");
        assert!(lines.iter().all(|l| l.chars().count() == lines[0].chars().count()), "{text}");
        assert!(lines[1].starts_with("|----") && lines[1].ends_with("-:|") && !lines[1].contains(":-"), "{text}");
    }
}
