//! Query parameters of the metric endpoints: the date range, validated.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike as _, Days, NaiveDate, Utc};
pub use metrics_sql::windows::DayRange;

use crate::error::ApiError;

/// Longest range one request may cover, in days.
pub const MAX_RANGE_DAYS: u64 = 366;
/// Days covered when `startDate` is omitted: the week ending on `endDate`.
pub const DEFAULT_RANGE_DAYS: u64 = 7;
/// Earliest day a range may name: no event before 2000 is accepted.
pub const MIN_DAY: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(day) => day,
    None => panic!("2000-01-01 is a date"),
};
/// Latest day a range may name: no event is received after 2099.
pub const MAX_DAY: NaiveDate = match NaiveDate::from_ymd_opt(2099, 12, 31) {
    Some(day) => day,
    None => panic!("2099-12-31 is a date"),
};

/// The query string as name → value, rejecting repeated and unknown names.
pub fn parse_query(query_string: &str, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(query_string)
        .map_err(|e| ApiError::BadRequest { field: None, message: format!("unreadable query string: {e}") })?
        .into_inner();
    let mut params = BTreeMap::new();
    for (name, value) in pairs {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::bad_field(
                truncate(&name),
                format!("unknown query parameter {:?}; expected one of: {}", truncate(&name), allowed.join(", ")),
            ));
        }
        if params.insert(name.clone(), value).is_some() {
            return Err(ApiError::bad_field(name.clone(), format!("query parameter {name:?} is given more than once")));
        }
    }
    Ok(params)
}

/// `startDate` and `endDate` (YYYY-MM-DD, inclusive). `endDate` defaults to
/// today (UTC), `startDate` to [`DEFAULT_RANGE_DAYS`] − 1 days before `endDate`.
pub fn day_range(params: &BTreeMap<String, String>, now: DateTime<Utc>) -> Result<DayRange, ApiError> {
    let end = match params.get("endDate") {
        Some(text) => parse_day("endDate", text)?,
        None => now.date_naive(),
    };
    let start = match params.get("startDate") {
        Some(text) => parse_day("startDate", text)?,
        None => end.checked_sub_days(Days::new(DEFAULT_RANGE_DAYS - 1)).unwrap_or(end).max(MIN_DAY),
    };
    if start > end {
        return Err(ApiError::bad_field("startDate", format!("startDate {start} is after endDate {end}")));
    }
    let days = (end - start).num_days() as u64 + 1;
    if days > MAX_RANGE_DAYS {
        return Err(ApiError::bad_field(
            "endDate",
            format!("the range covers {days} days; at most {MAX_RANGE_DAYS} are allowed"),
        ));
    }
    Ok(DayRange { start, end })
}

fn parse_day(field: &str, text: &str) -> Result<NaiveDate, ApiError> {
    let valid_shape = text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-';
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(date) if valid_shape && (MIN_DAY..=MAX_DAY).contains(&date) => Ok(date),
        Ok(date) if valid_shape && date.year_ce().1 <= 9999 => {
            Err(ApiError::bad_field(field, format!("{field} must be between {MIN_DAY} and {MAX_DAY}, got {date}")))
        }
        _ => Err(ApiError::bad_field(field, format!("{field} must be a date as YYYY-MM-DD, got {:?}", truncate(text)))),
    }
}

/// At most 64 characters of untrusted text, for error messages.
pub fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-27T13:45:00Z".parse().unwrap()
    }

    fn field(error: ApiError) -> Option<String> {
        match error {
            ApiError::BadRequest { field, .. } => field,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn dates_default_to_the_week_ending_today() {
        let range = day_range(&params(&[]), now()).unwrap();
        assert_eq!(range.start.to_string(), "2026-11-21");
        assert_eq!(range.end.to_string(), "2026-11-27");
        assert_eq!(range.windows(metrics_sql::windows::Grain::Hour).len(), 7 * 24);
        assert_eq!(range.windows(metrics_sql::windows::Grain::Day).len(), 7);
    }

    #[test]
    fn bad_dates_name_their_field() {
        for (pairs, expected) in [
            (vec![("startDate", "2024-13-01")], "startDate"),
            (vec![("startDate", "2024-1-01")], "startDate"),
            (vec![("endDate", "yesterday")], "endDate"),
            (vec![("endDate", "2024-01-01T00:00:00Z")], "endDate"),
            (vec![("startDate", "2024-02-01"), ("endDate", "2024-01-31")], "startDate"),
            (vec![("startDate", "2000-01-01"), ("endDate", "2024-01-31")], "endDate"),
            (vec![("startDate", "1969-12-31"), ("endDate", "1970-01-02")], "endDate"),
            (vec![("startDate", "1999-12-31"), ("endDate", "2000-01-02")], "startDate"),
            (vec![("endDate", "1999-12-31")], "endDate"),
            (vec![("startDate", "2099-12-31"), ("endDate", "2100-01-01")], "endDate"),
            (vec![("startDate", "2100-01-01")], "startDate"),
        ] {
            let error = day_range(&params(&pairs), now()).unwrap_err();
            assert_eq!(field(error).as_deref(), Some(expected), "{pairs:?}");
        }
    }

    #[test]
    fn the_bounds_are_inclusive_and_a_default_start_stops_at_the_first() {
        let range = day_range(&params(&[("startDate", "2000-01-01"), ("endDate", "2000-01-01")]), now()).unwrap();
        assert_eq!((range.start, range.end), (MIN_DAY, MIN_DAY));
        let range = day_range(&params(&[("startDate", "2099-12-31"), ("endDate", "2099-12-31")]), now()).unwrap();
        assert_eq!((range.start, range.end), (MAX_DAY, MAX_DAY));
        let range = day_range(&params(&[("endDate", "2000-01-03")]), now()).unwrap();
        assert_eq!(range.start, MIN_DAY, "the default week is cut at 2000-01-01");
        let error = day_range(&params(&[("startDate", "1999-12-31")]), now()).unwrap_err();
        assert!(error.to_string().contains("between 2000-01-01 and 2099-12-31"), "{error}");
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let error = parse_query("start_date=2024-01-01", &["startDate", "endDate"]).unwrap_err();
        assert_eq!(field(error).as_deref(), Some("start_date"));
        let error = parse_query("endDate=2024-01-01&endDate=2024-01-02", &["startDate", "endDate"]).unwrap_err();
        assert_eq!(field(error).as_deref(), Some("endDate"));
        let ok = parse_query("endDate=2024-01-02", &["startDate", "endDate"]).unwrap();
        assert_eq!(ok.get("endDate").map(String::as_str), Some("2024-01-02"));
    }
}
