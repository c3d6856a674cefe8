//! Reading, validation and SQL compilation of custom queries, without ClickHouse.

use chrono::{DateTime, TimeZone as _, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use metrics_sql::hourly::RolledHour;

use super::{
    lists::{self, DIMENSIONS, GRANULARITIES, METRICS, OPS, ValueKind},
    request::quoted,
    *,
};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 15, 12, 0, 0).unwrap()
}

/// Where the time-clustered copy starts at [`now`] with the default lateness.
fn by_time_from_ms() -> u64 {
    let lateness = u64::try_from(events_model::limits::DEFAULT_LATENESS.as_millis()).unwrap();
    metrics_sql::by_time_holds_from_ms(now().timestamp_millis() as u64, lateness)
}

fn compiled(body: Value) -> CompiledQuery {
    let request = QueryRequest::from_json(&body).unwrap_or_else(|e| panic!("{body}: {e:?}"));
    compile(&request, now(), by_time_from_ms()).unwrap_or_else(|e| panic!("{body}: {e:?}"))
}

/// The `(field, message)` of the 400 for `body`.
fn refusal(body: &Value) -> (String, String) {
    match QueryRequest::from_json(body).and_then(|request| compile(&request, now(), by_time_from_ms())) {
        Err(ApiError::BadRequest { field, message }) => (field.unwrap_or_default(), message),
        other => panic!("expected a 400 for {body}, got {other:?}"),
    }
}

fn base() -> Value {
    json!({"metrics": ["event_count"], "start": "2026-11-01", "end": "2026-11-02"})
}

fn with(changes: Value) -> Value {
    let mut body = base();
    for (key, value) in changes.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

/// `sql` with every string literal (backslash escapes included) replaced by `''`.
fn without_literals(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars();
    while let Some(c) = chars.next() {
        if c != '\'' {
            out.push(c);
            continue;
        }
        out.push_str("''");
        loop {
            match chars.next() {
                Some('\\') => {
                    chars.next();
                }
                Some('\'') | None => break,
                Some(_) => {}
            }
        }
    }
    out
}

// ------------------------------------------------------------- the lists ---

#[test]
fn names_are_unique_and_never_clash() {
    let mut output_names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
    output_names.extend(DIMENSIONS.iter().map(|d| d.name));
    output_names.push("time");
    let mut sorted = output_names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), output_names.len(), "metric, dimension and time column names must differ");
    for names in
        [GRANULARITIES.iter().map(|g| g.name).collect::<Vec<_>>(), OPS.iter().map(|o| o.name).collect::<Vec<_>>()]
    {
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, {
            let mut n = names.clone();
            n.sort();
            n
        });
    }
}

#[test]
fn every_fragment_reads_only_columns_of_the_events_table() {
    let ddl = include_str!("../../../../schemas/clickhouse/0001_events.sql");
    let has_column = |column: &str| ddl.lines().any(|line| line.trim_start().starts_with(&format!("{column} ")));
    let all_columns = METRICS.iter().flat_map(|m| m.columns).chain(DIMENSIONS.iter().flat_map(|d| d.columns));
    for column in all_columns.chain(["event_id", "timestamp", "timestamp_ms", "received_at_ms"].iter()) {
        assert!(has_column(column), "{column} is not a column of events");
    }
    for metric in METRICS {
        assert!(!metric.sql.contains('?'), "{}: a fragment must not hold placeholders", metric.name);
    }
    for dimension in DIMENSIONS {
        assert!(!dimension.sql.contains('?'), "{}", dimension.name);
        if dimension.kind == ValueKind::Text {
            assert_eq!(dimension.columns, &[dimension.sql], "a column dimension reads its own column");
        }
    }
    for op in OPS {
        assert_eq!(format!("{}{}", op.sql_prefix, op.sql_suffix).matches('?').count(), 1, "{}", op.name);
    }
}

#[test]
fn a_range_the_time_clustered_copy_holds_reads_it_and_an_older_one_reads_events() {
    let from = DateTime::from_timestamp_millis(by_time_from_ms() as i64).unwrap();
    // 2026-11-12T12:00:00Z: the default 48 h lateness and a day before it.
    assert_eq!(from, Utc.with_ymd_and_hms(2026, 11, 12, 12, 0, 0).unwrap());
    let reads = |start: DateTime<Utc>| {
        let sql = compiled(with(json!({"start": start.to_rfc3339(), "end": "2026-11-15T12:00:00Z"}))).sql().to_string();
        let copy = sql.contains(&format!("FROM {} WHERE", metrics_sql::EVENTS_BY_TIME_TABLE));
        let events = sql.contains(&format!("FROM {} WHERE", events_model::EVENTS_TABLE));
        assert!(copy != events, "one table: {sql}");
        copy
    };
    assert!(reads(from), "a range from the copy's start reads the copy");
    assert!(reads(from + chrono::TimeDelta::hours(30)));
    assert!(!reads(from - chrono::TimeDelta::milliseconds(1)), "a range starting before it reads events");
    // The copy has every column a custom query reads.
    let ddl = include_str!("../../../../schemas/clickhouse/0012_events_by_time_v2.sql");
    let create = &ddl[ddl.find("CREATE TABLE").unwrap()..ddl.find("ENGINE").unwrap()];
    let all_columns = METRICS.iter().flat_map(|m| m.columns).chain(DIMENSIONS.iter().flat_map(|d| d.columns));
    for column in all_columns.chain(["event_id", "timestamp", "timestamp_ms", "received_at_ms"].iter()) {
        let declared = create.lines().any(|line| line.trim_start().starts_with(&format!("{column} ")));
        assert!(declared, "{column} is not a column of {}", metrics_sql::EVENTS_BY_TIME_TABLE);
    }
}

#[test]
fn the_document_lists_every_name() {
    let doc = include_str!("../../../../docs/custom-query.md");
    let names = METRICS
        .iter()
        .map(|m| m.name)
        .chain(DIMENSIONS.iter().map(|d| d.name))
        .chain(GRANULARITIES.iter().map(|g| g.name))
        .chain(OPS.iter().map(|o| o.name));
    for name in names {
        assert!(doc.contains(&format!("`{name}`")), "docs/custom-query.md does not mention `{name}`");
    }
}

// ------------------------------------------------------------ compiling ---

#[test]
fn the_example_compiles_to_parameterised_sql() {
    let query = compiled(json!({
        "metrics": ["event_count", "unique_users"],
        "group_by": ["country", "hour"],
        "filters": [
            {"dimension": "device_type", "op": "eq", "value": "mobile"},
            {"dimension": "event_type", "op": "in", "values": ["video_start", "seek"]}
        ],
        "start": "2026-11-01T00:00:00Z",
        "end": "2026-11-02T00:00:00Z",
        "granularity": "hour",
        "limit": 100,
        "order_by": "event_count"
    }));
    assert_eq!(
        query.sql(),
        "SELECT intDiv(toUInt32(timestamp), 3600) * 3600 AS g_time, country AS g_country, \
         toUInt8(intDiv(toUInt32(timestamp) % 86400, 3600)) AS g_hour, count() AS m_event_count, \
         ifNull(uniqExact(user_id), 0) AS m_unique_users \
         FROM (SELECT event_id, first_device_type AS device_type, first_event_type AS event_type, \
         first_timestamp AS timestamp, first_country AS country, first_user_id AS user_id FROM (SELECT event_id, \
         argMin(device_type, received_at_ms) AS first_device_type, argMin(event_type, received_at_ms) AS first_event_type, \
         argMin(timestamp, received_at_ms) AS first_timestamp, argMin(country, received_at_ms) AS first_country, \
         argMin(user_id, received_at_ms) AS first_user_id FROM events \
         WHERE timestamp >= toDateTime(?) AND timestamp < toDateTime(?) AND timestamp_ms >= ? AND timestamp_ms < ? \
         AND device_type = ? AND has(?, event_type) GROUP BY event_id)) \
         GROUP BY g_time, g_country, g_hour ORDER BY g_time, m_event_count DESC, g_country, g_hour LIMIT ?"
    );
    assert_eq!(
        query.params(),
        &[
            Param::U64(1_793_491_200),
            Param::U64(1_793_577_600),
            Param::U64(1_793_491_200_000),
            Param::U64(1_793_577_600_000),
            Param::Str("mobile".into()),
            Param::Strs(vec!["video_start".into(), "seek".into()]),
            Param::U64(101),
        ]
    );
    let names: Vec<_> = query.columns().iter().map(|c| c.name).collect();
    assert_eq!(names, ["time", "country", "hour", "event_count", "unique_users"]);
    assert_eq!(query.limit(), 100);
    assert!(query.render_sql().contains("AND device_type = 'mobile' AND has(['video_start','seek'], event_type)"));
}

#[test]
fn without_group_by_or_granularity_there_is_one_row_and_no_group_by() {
    let query = compiled(base());
    assert_eq!(
        query.sql(),
        "SELECT count() AS m_event_count FROM (SELECT event_id FROM (SELECT event_id FROM events \
         WHERE timestamp >= toDateTime(?) AND timestamp < toDateTime(?) AND timestamp_ms >= ? AND timestamp_ms < ? \
         GROUP BY event_id)) LIMIT ?"
    );
    assert_eq!(query.limit(), DEFAULT_LIMIT);
    assert_eq!(query.params().last(), Some(&Param::U64(DEFAULT_LIMIT as u64 + 1)));
}

#[test]
fn every_metric_dimension_op_and_granularity_compiles() {
    let all_metrics: Vec<_> = METRICS.iter().map(|m| m.name).collect();
    let all_dimensions: Vec<_> = DIMENSIONS.iter().map(|d| d.name).collect();
    let filters: Vec<_> = DIMENSIONS
        .iter()
        .filter(|d| d.filterable)
        .zip(OPS.iter().cycle())
        .map(|(d, op)| {
            if op.takes_list {
                json!({"dimension": d.name, "op": op.name, "values": ["a", "b"]})
            } else {
                json!({"dimension": d.name, "op": op.name, "value": "a"})
            }
        })
        .collect();
    for granularity in GRANULARITIES {
        let query = compiled(with(json!({
            "metrics": all_metrics, "group_by": all_dimensions, "filters": filters,
            "start": "2026-11-01T00:00:00Z", "end": "2026-11-01T12:00:00Z", "granularity": granularity.name,
        })));
        assert_eq!(query.columns().len(), 1 + all_metrics.len() + all_dimensions.len());
        assert!(query.sql().contains(granularity.sql));
        assert_eq!(query.sql().matches('?').count(), query.params().len());
    }
}

#[test]
fn times_are_rfc3339_or_dates_and_end_defaults_to_now() {
    let range = |body: Value| compiled(body).range();
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0).unwrap();
    assert_eq!(range(base()), (day(1), day(2)));
    assert_eq!(
        range(with(json!({"start": "2026-11-01T01:00:00+01:00", "end": "2026-11-02T00:00:00.000Z"}))),
        (day(1), day(2))
    );
    assert_eq!(range(with(json!({"end": null}))), (day(1), now()));
    // Sub-second bounds: whole seconds around them on `timestamp`, exact on `timestamp_ms`.
    let query = compiled(with(json!({"start": "2026-11-01T00:00:00.250Z", "end": "2026-11-01T00:00:10.500Z"})));
    assert_eq!(
        &query.params()[..4],
        &[
            Param::U64(1_793_491_200),
            Param::U64(1_793_491_211),
            Param::U64(1_793_491_200_250),
            Param::U64(1_793_491_210_500)
        ]
    );
}

#[test]
fn range_limits_follow_the_granularity() {
    let ok = |start: &str, end: &str, granularity: Value| {
        compiled(with(json!({"start": start, "end": end, "granularity": granularity})));
    };
    ok("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", json!("minute"));
    ok("2026-11-01", "2026-12-02", json!("hour"));
    ok("2026-01-01", "2027-01-02", json!("day"));
    ok("2026-01-01", "2027-01-02", Value::Null);

    let refused = |start: &str, end: &str, granularity: Value| {
        refusal(&with(json!({"start": start, "end": end, "granularity": granularity})))
    };
    let (field, message) = refused("2026-11-01T00:00:00Z", "2026-11-02T00:00:01Z", json!("minute"));
    assert_eq!(field, "granularity");
    assert!(message.contains("24 hours"), "{message}");
    let (field, message) = refused("2026-11-01", "2026-12-03", json!("hour"));
    assert_eq!(field, "granularity");
    assert!(message.contains("31 days"), "{message}");
    for granularity in [json!("day"), Value::Null, json!("minute")] {
        let (field, message) = refused("2026-01-01", "2027-01-03", granularity);
        assert_eq!(field, "end");
        assert!(message.contains("366 days"), "{message}");
    }
    let (field, _) = refused("1900-01-01", "2026-01-01", Value::Null);
    assert_eq!(field, "start");
    let (field, _) = refused("2100-01-01", "2100-01-02", Value::Null);
    assert_eq!(field, "end");
    let (field, _) = refused("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", Value::Null);
    assert_eq!(field, "start");
}

// -------------------------------------------------------------- refusals ---

#[test]
fn each_invalid_input_is_a_400_naming_its_field() {
    let long = "x".repeat(300);
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), ""),
        (json!("metrics"), ""),
        (json!({"start": "2026-11-01"}), "metrics"),
        (with(json!({"metrics": []})), "metrics"),
        (with(json!({"metrics": "event_count"})), "metrics"),
        (with(json!({"metrics": ["event_count", 5]})), "metrics[1]"),
        (with(json!({"metrics": ["event_count", "views", "bogus"]})), "metrics[2]"),
        (with(json!({"metrics": ["views", "views"]})), "metrics[1]"),
        (with(json!({"metrics": vec!["views"; 16]})), "metrics"),
        (with(json!({"group_by": ["country", "planet"]})), "group_by[1]"),
        (with(json!({"group_by": ["country", "country"]})), "group_by[1]"),
        (with(json!({"group_by": "country"})), "group_by"),
        (with(json!({"group_by": [["country"]]})), "group_by[0]"),
        (with(json!({"filters": {"dimension": "os"}})), "filters"),
        (with(json!({"filters": ["os"]})), "filters[0]"),
        (with(json!({"filters": vec![json!({"dimension": "os", "op": "eq", "value": "x"}); 21]})), "filters"),
        (with(json!({"filters": [{"op": "eq", "value": "x"}]})), "filters[0].dimension"),
        (with(json!({"filters": [{"dimension": "planet", "op": "eq", "value": "x"}]})), "filters[0].dimension"),
        (with(json!({"filters": [{"dimension": "hour", "op": "eq", "value": "3"}]})), "filters[0].dimension"),
        (with(json!({"filters": [{"dimension": "day", "op": "eq", "value": "2026-11-01"}]})), "filters[0].dimension"),
        (with(json!({"filters": [{"dimension": "os", "value": "x"}]})), "filters[0].op"),
        (with(json!({"filters": [{"dimension": "os", "op": "like", "value": "x"}]})), "filters[0].op"),
        (with(json!({"filters": [{"dimension": "os", "op": "eq"}]})), "filters[0].value"),
        (with(json!({"filters": [{"dimension": "os", "op": "eq", "value": 5}]})), "filters[0].value"),
        (with(json!({"filters": [{"dimension": "os", "op": "eq", "values": ["x"]}]})), "filters[0].values"),
        (with(json!({"filters": [{"dimension": "os", "op": "in", "value": "x"}]})), "filters[0].value"),
        (with(json!({"filters": [{"dimension": "os", "op": "in"}]})), "filters[0].values"),
        (with(json!({"filters": [{"dimension": "os", "op": "in", "values": []}]})), "filters[0].values"),
        (with(json!({"filters": [{"dimension": "os", "op": "in", "values": "x"}]})), "filters[0].values"),
        (with(json!({"filters": [{"dimension": "os", "op": "in", "values": ["a", 1]}]})), "filters[0].values[1]"),
        (with(json!({"filters": [{"dimension": "os", "op": "in", "values": vec!["a"; 101]}]})), "filters[0].values"),
        (with(json!({"filters": [{"dimension": "os", "op": "eq", "value": long}]})), "filters[0].value"),
        (with(json!({"filters": [{"dimension": "os", "op": "in", "values": ["ok", long]}]})), "filters[0].values[1]"),
        (with(json!({"filters": [{"dimension": "os", "op": "eq", "value": "a\u{0}b"}]})), "filters[0].value"),
        (with(json!({"filters": [{"dimension": "os", "op": "eq", "value": "a\nb"}]})), "filters[0].value"),
        (with(json!({"filters": [{"dimension": "os", "op": "eq", "value": "x", "or": "1=1"}]})), "filters[0].or"),
        (with(json!({"start": null})), "start"),
        (with(json!({"start": "yesterday"})), "start"),
        (with(json!({"start": 1_793_491_200})), "start"),
        (with(json!({"start": "2026-11-1"})), "start"),
        (with(json!({"start": "2026-11-01 00:00:00"})), "start"),
        (with(json!({"end": "2026-13-01"})), "end"),
        (with(json!({"end": "2026-11-01"})), "end"),
        (with(json!({"end": "2026-10-01"})), "end"),
        (with(json!({"start": "2026-11-16", "end": null})), "start"),
        (with(json!({"granularity": "week"})), "granularity"),
        (with(json!({"granularity": 60})), "granularity"),
        (with(json!({"limit": 0})), "limit"),
        (with(json!({"limit": -1})), "limit"),
        (with(json!({"limit": 10_001})), "limit"),
        (with(json!({"limit": 1_000_000_000})), "limit"),
        (with(json!({"limit": 1e30})), "limit"),
        (with(json!({"limit": 10.5})), "limit"),
        (with(json!({"limit": "100"})), "limit"),
        (with(json!({"order_by": "views"})), "order_by"),
        (with(json!({"order_by": "country"})), "order_by"),
        (with(json!({"order_by": ["event_count"]})), "order_by"),
        (with(json!({"metric": ["event_count"]})), "metric"),
        (with(json!({"sql": "SELECT 1"})), "sql"),
    ];
    for (body, field) in cases {
        let (got, message) = refusal(&body);
        assert_eq!(got, field, "{body}: {message}");
        assert!(!message.is_empty());
    }
}

#[test]
fn a_whole_float_limit_is_the_integer_json_schema_says_it_is() {
    for value in [json!(467), json!(467.0)] {
        let request = QueryRequest::from_json(&with(json!({"limit": value}))).unwrap();
        assert_eq!(request.limit, Some(467), "{value}");
    }
}

#[test]
fn an_unknown_name_is_quoted_json_escaped_and_cut() {
    let (field, message) = refusal(&with(json!({"metrics": ["event_count", "views", "it's \"x\"\n"]})));
    assert_eq!(field, "metrics[2]");
    assert!(message.starts_with(r#"unknown metric "it's \"x\"\n"; expected one of event_count, "#), "{message}");
    assert!(message.contains("completions"), "the message lists every metric: {message}");

    let long = "é".repeat(200);
    let (_, message) = refusal(&with(json!({"group_by": [long]})));
    assert!(message.contains(&format!("\"{}\"…", "é".repeat(64))), "{message}");
    assert!(!message.contains(&"é".repeat(65)), "{message}");

    let (field, message) = refusal(&with(json!({ "k".repeat(500): 1 })));
    assert_eq!(field, "k".repeat(64));
    assert!(message.contains("expected metrics, group_by, filters"), "{message}");
}

// ------------------------------------------------------------ hostility ---

const HOSTILE: &[&str] = &[
    "'; DROP TABLE events; --",
    "video_id) OR 1=1",
    "x' OR '1'='1",
    "/* */",
    "*/ SELECT 1 /*",
    "\\",
    "\\'",
    "'",
    "`",
    "?",
    "??",
    "?fields",
    "); SELECT * FROM system.users; --",
    "ünïcødé ✓ 日本語 🎬",
    "\u{202e}rtl",
    "FORMAT TabSeparated",
    "SETTINGS readonly=0",
];

#[test]
fn hostile_names_are_refused_everywhere() {
    for hostile in HOSTILE {
        let bodies = [
            (with(json!({"metrics": [hostile]})), "metrics[0]"),
            (with(json!({"group_by": [hostile]})), "group_by[0]"),
            (with(json!({"filters": [{"dimension": hostile, "op": "eq", "value": "x"}]})), "filters[0].dimension"),
            (with(json!({"filters": [{"dimension": "os", "op": hostile, "value": "x"}]})), "filters[0].op"),
            (with(json!({"granularity": hostile})), "granularity"),
            (with(json!({"order_by": hostile})), "order_by"),
            (with(json!({"start": hostile})), "start"),
            (with(json!({"end": hostile})), "end"),
        ];
        for (body, field) in bodies {
            assert_eq!(refusal(&body).0, field, "{body}");
        }
    }
}

#[test]
fn hostile_values_stay_inside_string_literals() {
    // A value with an invisible or bidirectional character is refused (no
    // stored dimension holds one); every other value is bound.
    let (field, _) = refusal(&with(json!({"filters": [{"dimension": "os", "op": "eq", "value": "a\u{202e}b"}]})));
    assert_eq!(field, "filters[0].value");
    for hostile in HOSTILE.iter().filter(|h| h.chars().all(events_model::text::is_plain)) {
        let body = |value: &str| {
            with(json!({"group_by": ["country"], "filters": [
                {"dimension": "video_id", "op": "eq", "value": value},
                {"dimension": "country", "op": "not_in", "values": [value, "DE", value]},
            ]}))
        };
        let query = compiled(body(hostile));
        let plain = compiled(body(""));
        assert_eq!(query.sql(), plain.sql(), "the SQL text never depends on values");
        assert!(!query.sql().contains(hostile) || plain.sql().contains(hostile));
        let rendered = query.render_sql();
        assert_eq!(without_literals(&rendered), without_literals(&plain.render_sql()), "{rendered}");
    }
}

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "'",
            "\\",
            "\"",
            "`",
            ";",
            "--",
            "/*",
            "*/",
            "?",
            "??",
            "?fields",
            ")",
            "(",
            " OR ",
            "1=1",
            "DROP TABLE ",
            "events",
            "é",
            "🎬",
            "\u{202e}",
            "%",
            "{}",
            "[",
            "]",
            ",",
            "FORMAT ",
            "\\'",
            "''",
        ])
        .prop_map(String::from),
        "\\PC{0,8}",
    ]
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..12).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the values, the SQL text is the same and the rendered SQL
    /// differs only inside string literals.
    #[test]
    fn values_never_reach_the_sql_text(a in hostile_string(), b in hostile_string(), c in hostile_string()) {
        let body = |a: &str, b: &str, c: &str| with(json!({"filters": [
            {"dimension": "os", "op": "neq", "value": a},
            {"dimension": "cdn", "op": "in", "values": [b, c]},
        ]}));
        let request = QueryRequest::from_json(&body(&a, &b, &c)).unwrap();
        let plain = compile(&QueryRequest::from_json(&body("", "", "")).unwrap(), now(), by_time_from_ms()).unwrap();
        match compile(&request, now(), by_time_from_ms()) {
            Ok(query) => {
                prop_assert_eq!(query.sql(), plain.sql());
                prop_assert_eq!(without_literals(&query.render_sql()), without_literals(&plain.render_sql()));
            }
            Err(ApiError::BadRequest { field, .. }) => {
                // Only length or an invisible character can fail: hostile_string()
                // never produces control characters.
                let field = field.unwrap();
                let refused = |s: &str| s.len() > 256 || !s.chars().all(events_model::text::is_plain);
                prop_assert!(field.starts_with("filters[") && (refused(&a) || refused(&b) || refused(&c)));
            }
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }

    /// A name outside the lists is always a 400 naming its position.
    #[test]
    fn unknown_names_are_always_refused(name in hostile_string(), slot in 0..5usize) {
        let known = |n: &str| lists::metric(n).is_some() || lists::dimension(n).is_some()
            || lists::op(n).is_some() || lists::granularity(n).is_some();
        prop_assume!(!known(&name));
        let (body, field) = match slot {
            0 => (with(json!({"metrics": ["views", name]})), "metrics[1]"),
            1 => (with(json!({"group_by": [name]})), "group_by[0]"),
            2 => (with(json!({"filters": [{"dimension": name, "op": "eq", "value": "x"}]})), "filters[0].dimension"),
            3 => (with(json!({"filters": [{"dimension": "os", "op": name, "value": "x"}]})), "filters[0].op"),
            _ => (with(json!({"granularity": name})), "granularity"),
        };
        let (got, message) = refusal(&body);
        prop_assert_eq!(got, field);
        prop_assert!(message.contains(&quoted(&name)), "{}", message);
    }

    /// Any JSON at all is answered, never a panic, and a success always has a
    /// SQL text built from the lists alone.
    #[test]
    fn arbitrary_bodies_never_panic(body in arbitrary_json()) {
        if let Ok(request) = QueryRequest::from_json(&body) {
            if let Ok(query) = compile(&request, now(), by_time_from_ms()) {
                prop_assert!(query.sql().chars().all(|c| c.is_ascii_alphanumeric() || " _(),=!<>?*%'".contains(c)));
            }
        }
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(
        METRICS
            .iter()
            .map(|m| m.name)
            .chain(DIMENSIONS.iter().map(|d| d.name))
            .chain(["eq", "in", "hour", "minute", "2026-11-01", "2026-11-02T00:00:00Z"])
            .collect::<Vec<_>>(),
    )
    .prop_map(|s| Value::String(s.into()));
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        hostile_string().prop_map(Value::String),
        names,
    ];
    let keys = prop::sample::select(vec![
        "metrics",
        "group_by",
        "filters",
        "start",
        "end",
        "granularity",
        "limit",
        "order_by",
        "dimension",
        "op",
        "value",
        "values",
        "other",
    ]);
    leaf.prop_recursive(3, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone().prop_map(String::from), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// -------------------------------------------------------------- shaping ---

#[test]
fn answers_from_both_clickhouse_versions_are_normalised() {
    let query = compiled(with(json!({
        "metrics": ["event_count", "error_rate", "avg_bitrate_kbps"],
        "group_by": ["day", "hour", "country"],
        "granularity": "hour",
        "limit": 2,
    })));
    // ClickHouse 18.16 quotes 64-bit integers; current releases write numbers.
    let old = br#"{"meta": [], "data": [["1793491200", 20758, 3, "DE", "12", 0.25, null],
                                       ["1793494800", 20758, 4, "", "3", 0, 2500.5],
                                       ["1793498400", 20758, 5, "FR", "1", 1, 100]], "rows": 3}"#;
    let new = br#"{"meta": [], "data": [[1793491200, 20758, 3, "DE", 12, 0.25, null],
                                       [1793494800, 20758, 4, "", 3, 0, 2500.5],
                                       [1793498400, 20758, 5, "FR", 1, 1, 100]], "rows": 3, "statistics": {}}"#;
    for body in [&old[..], &new[..]] {
        let answer = execute::shape(&query, body, 7).unwrap();
        assert_eq!(answer.columns, ["time", "day", "hour", "country", "event_count", "error_rate", "avg_bitrate_kbps"]);
        assert!(answer.truncated);
        assert_eq!(answer.sql_ms, 7);
        let rows = serde_json::to_value(&answer.rows).unwrap();
        assert_eq!(
            rows,
            json!([
                {"time": "2026-11-01T00:00:00Z", "day": "2026-11-01", "hour": 3, "country": "DE",
                 "event_count": 12, "error_rate": 0.25, "avg_bitrate_kbps": null},
                {"time": "2026-11-01T01:00:00Z", "day": "2026-11-01", "hour": 4, "country": "",
                 "event_count": 3, "error_rate": 0.0, "avg_bitrate_kbps": 2500.5},
            ])
        );
    }
    assert!(execute::shape(&query, br#"{"data": [[1, 2]]}"#, 0).is_err(), "wrong arity");
    assert!(execute::shape(&query, b"Code: 62. DB::Exception", 0).is_err());
}

// -------------------------------------------------------------- openapi ---

#[test]
fn the_openapi_schema_lists_the_names_from_the_tables() {
    let doc = serde_json::to_value(crate::routes::document()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let enum_of = |schema: &Value| -> Vec<String> {
        schema["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("no enum in {schema}"))
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| v.to_string())
            .collect()
    };
    let quoted_names = |names: Vec<&str>| names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>();
    let request = &schemas["QueryRequest"]["properties"];
    assert_eq!(enum_of(&request["metrics"]["items"]), quoted_names(METRICS.iter().map(|m| m.name).collect()));
    assert_eq!(enum_of(&request["group_by"]["items"]), quoted_names(DIMENSIONS.iter().map(|d| d.name).collect()));
    assert_eq!(enum_of(&request["granularity"]), quoted_names(GRANULARITIES.iter().map(|g| g.name).collect()));
    // Filter is one of two shapes (a `value` or a list of `values`), each
    // with every filterable dimension and its share of the operators.
    let shapes = schemas["Filter"]["oneOf"].as_array().unwrap_or_else(|| panic!("{}", schemas["Filter"]));
    let mut ops = Vec::new();
    for shape in shapes {
        assert_eq!(
            enum_of(&shape["properties"]["dimension"]),
            quoted_names(DIMENSIONS.iter().filter(|d| d.filterable).map(|d| d.name).collect())
        );
        ops.extend(enum_of(&shape["properties"]["op"]));
    }
    ops.sort();
    let mut expected = quoted_names(OPS.iter().map(|o| o.name).collect());
    expected.sort();
    assert_eq!(ops, expected);
    let description = request["metrics"]["items"]["description"].as_str().unwrap();
    for metric in METRICS {
        assert!(description.contains(metric.doc), "{description}");
    }
    assert!(doc["paths"]["/api/metrics/query"]["post"].is_object());
}

// ------------------------------------------------------- hourly rollup ---

#[test]
fn only_queries_the_rollup_can_answer_offer_their_whole_hours() {
    let hour = |text: &str| (DateTime::parse_from_rfc3339(text).unwrap().timestamp() / 3600) as u32;
    let hours = |body: Value| compiled(body).rollup_hours();
    // Whole hours only: a start inside an hour begins at the next one.
    assert_eq!(
        hours(with(json!({"start": "2026-11-01T05:30:00Z", "end": "2026-11-01T08:00:00.5Z"}))),
        Some(hour("2026-11-01T06:00:00Z")..hour("2026-11-01T08:00:00Z"))
    );
    assert_eq!(hours(with(json!({"start": "2026-11-01T05:30:00Z", "end": "2026-11-01T06:59:59Z"}))), None);
    assert!(hours(with(json!({"group_by": ["country", "hour", "day"], "granularity": "day"}))).is_some());
    let filtered = json!([{"dimension": "cdn", "op": "in", "values": ["a"]}]);
    assert!(hours(with(json!({"filters": filtered, "metrics": ["avg_bitrate_kbps", "error_rate"]}))).is_some());
    // A distinct count, the video, or minute buckets: raw events only.
    assert_eq!(hours(with(json!({"metrics": ["event_count", "unique_users"]}))), None);
    assert_eq!(hours(with(json!({"group_by": ["video_id"]}))), None);
    assert_eq!(hours(with(json!({"filters": [{"dimension": "video_id", "op": "eq", "value": "v"}]}))), None);
    assert_eq!(hours(with(json!({"granularity": "minute"}))), None);
}

#[test]
fn rolled_up_hours_are_read_from_the_rollup_and_the_rest_of_the_range_raw() {
    let query = compiled(with(json!({
        "metrics": ["views", "avg_bitrate_kbps"], "group_by": ["country"],
        "filters": [{"dimension": "device_type", "op": "eq", "value": "tv"}],
        "start": "2026-11-01T05:30:00Z", "end": "2026-11-01T12:00:00Z"
    })));
    let hours = query.rollup_hours().unwrap();
    let first = hours.start;
    // Rolled: 06, 07 and 09; raw: 05:30-06:00, 08-09 and 10-12.
    let rolled = query.with_rolled(&whole_hours(&[first, first + 1, first + 3]));
    let sql = without_literals(&rolled.render_sql());
    assert_eq!(sql.matches("events_hourly").count(), 1, "{sql}");
    assert_eq!(sql.matches(" OR (timestamp >= ").count(), 2, "three raw ranges: {sql}");
    assert!(sql.contains("UNION ALL"), "{sql}");
    assert_eq!(sql.matches("device_type = ''").count(), 2, "the filter in both branches: {sql}");
    assert!(
        sql.contains("if(sum(p_bitrate_n) = 0, NULL, sum(p_bitrate_sum) / sum(p_bitrate_n)) AS m_avg_bitrate_kbps")
    );
    // Every hour rolled and the range on whole hours: no raw branch at all.
    let whole =
        compiled(with(json!({"metrics": ["views"], "start": "2026-11-01T06:00:00Z", "end": "2026-11-01T09:00:00Z"})));
    let all: Vec<u32> = whole.rollup_hours().unwrap().collect();
    let sql = whole.with_rolled(&whole_hours(&all)).render_sql();
    assert!(!sql.contains("UNION ALL") && !sql.contains("argMin"), "{sql}");
    // With nothing rolled, the statement is the raw one.
    assert_eq!(whole.with_rolled(&[]).render_sql(), whole.render_sql());
}

#[test]
fn scattered_rolled_hours_keep_only_the_longest_runs() {
    let query =
        compiled(with(json!({"metrics": ["views"], "start": "2026-10-01", "end": "2026-11-01", "granularity": "day"})));
    let hours: Vec<u32> = query.rollup_hours().unwrap().collect();
    // Every other hour rolled, and one run of ten hours.
    let mut rolled: Vec<u32> = hours.iter().copied().step_by(2).collect();
    rolled.extend(hours[101..110].iter().copied().filter(|h| h % 2 != hours[0] % 2));
    rolled.sort_unstable();
    let sql = without_literals(&query.with_rolled(&whole_hours(&rolled)).render_sql());
    let runs = sql.matches("hour >= toDateTime(").count();
    assert_eq!(runs, compile::MAX_ROLLED_RUNS, "{sql}");
}

/// `hours` rolled up with every row of each.
fn whole_hours(hours: &[u32]) -> Vec<RolledHour> {
    hours.iter().map(|&hour| RolledHour { hour, rows_after: None }).collect()
}

#[test]
fn hours_with_rows_after_their_run_are_completed_from_the_copy_the_newest_few_only() {
    let body = with(json!({"metrics": ["views"], "start": "2026-11-14", "end": "2026-11-15T12:00:00Z"}));
    let query = compiled(body.clone());
    let hours: Vec<u32> = query.rollup_hours().unwrap().collect();
    assert_eq!(hours.len(), 36);
    // Every hour rolled up; six of them got rows after their run.
    let late: Vec<u32> = [0, 5, 10, 20, 30, 35].map(|i| hours[i]).to_vec();
    let rolled: Vec<RolledHour> = hours
        .iter()
        .map(|&hour| RolledHour { hour, rows_after: late.contains(&hour).then_some(1_000 + hour) })
        .collect();
    let sql = query.with_rolled(&rolled).render_sql();
    // The copy holds them all (from 72 h before `now`, 2026-11-15T12:00):
    // the newest four are completed by the rows after their run, the older
    // two read raw whole.
    assert_eq!(sql.matches("HAVING first_inserted_at > toDateTime(").count(), compile::MAX_DELTA_HOURS, "{sql}");
    for &hour in &late[2..] {
        assert!(sql.contains(&format!("inserted_at > toDateTime({})", 1_000 + hour)), "{hour}: {sql}");
    }
    assert!(!sql.contains(&format!("inserted_at > toDateTime({})", 1_000 + late[1])), "{sql}");
    assert_eq!(sql.matches(" OR (timestamp >= ").count(), 1, "two raw hours, two ranges: {sql}");
    // Where the copy does not hold the hours, they are read raw whole.
    let older = compile(&QueryRequest::from_json(&body).unwrap(), now(), u64::MAX).unwrap();
    let sql = older.with_rolled(&rolled).render_sql();
    assert!(!sql.contains("HAVING"), "{sql}");
}
