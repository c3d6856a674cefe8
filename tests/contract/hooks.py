"""Schemathesis hooks for the API contract tests (crates/*/tests/contract.rs).

The OpenAPI documents say everything a single field must be. A few rules tie
fields together or depend on the clock, which JSON Schema cannot say; they
are written in the fields' descriptions and repeated here, so that a request
generated as *valid* also keeps them (otherwise the server refuses it, rightly,
and the check `positive_data_acceptance` would blame the document):

- metric ranges (`startDate`/`endDate`): start <= end, at most 366 days,
  within 2000-01-01..2099-12-31; missing ends default to today and 6 days
  before the end (not before 2000-01-01);
- custom queries: start < end (end defaults to now), 1970 <= start, end <=
  2100, at most 366 days, and the granularity's own limit; `order_by` names a
  requested metric;
- events: `timestamp` from 48 hours before (the lateness horizon; never before
  2000-01-01) to 24 hours after the server receives it.

One rule goes the other way. A batch is accepted when at least one of its
events is valid: the invalid ones are reported in `rejected` and the rest
stored, so a bad event loses nothing else. A batch generated as *invalid*
therefore is only expected to be refused when none of its events is valid.

Nothing else is filtered; every check runs at full strength. The constants
below are checked against the Rust ones by crates/query-api/tests/contract.rs.
"""

from datetime import date, datetime, timedelta, timezone

import jsonschema
import schemathesis

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 7
DAY_SECONDS = 86400
MAX_RANGE_SECONDS = 366 * DAY_SECONDS
GRANULARITY_MAX_RANGE_SECONDS = {"minute": DAY_SECONDS, "hour": 31 * DAY_SECONDS, "day": MAX_RANGE_SECONDS}
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
# The gateway refuses timestamps older than its lateness (too_late); an hour
# of margin for the time a run takes.
LATENESS = timedelta(hours=48)
LATENESS_MARGIN = timedelta(hours=1)
# The server allows 24 hours; an hour of margin for the time a run takes.
MAX_FUTURE_SKEW = timedelta(hours=23)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MIN_METRIC_DAY = date(2000, 1, 1)
MAX_METRIC_DAY = date(2099, 12, 31)
MAX_QUERY_TIME = datetime(2100, 1, 1, tzinfo=timezone.utc)


def _now():
    return datetime.now(timezone.utc)


def _mode(case):
    meta = case.meta
    return meta.generation.mode if meta is not None else None


def _positive(case):
    mode = _mode(case)
    return mode is not None and mode.is_positive


def _negative(case):
    mode = _mode(case)
    return mode is not None and mode.is_negative


def _day(text):
    try:
        return date.fromisoformat(text) if isinstance(text, str) and len(text) == 10 else None
    except ValueError:
        return None


def _time(value):
    """An RFC 3339 time or a YYYY-MM-DD day (midnight UTC), else None."""
    if not isinstance(value, str):
        return None
    day = _day(value)
    if day is not None:
        return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _metric_range_ok(query):
    query = query or {}
    today = _now().date()
    end = _day(query["endDate"]) if "endDate" in query else today
    if end is None:
        return True  # not a day: the request is refused whatever the mode
    start = (
        _day(query["startDate"])
        if "startDate" in query
        else max(end - timedelta(days=DEFAULT_RANGE_DAYS - 1), MIN_METRIC_DAY)
    )
    if start is None:
        return True
    return (
        start <= end
        and (end - start).days + 1 <= MAX_RANGE_DAYS
        and MIN_METRIC_DAY <= start
        and end <= MAX_METRIC_DAY
    )


def _custom_query_ok(body):
    if not isinstance(body, dict):
        return True
    start = _time(body.get("start"))
    end = _time(body["end"]) if body.get("end") is not None else _now()
    if start is None or end is None:
        return True
    if start < EPOCH or end > MAX_QUERY_TIME or end <= start:
        return False
    length = (end - start).total_seconds()
    if length > MAX_RANGE_SECONDS:
        return False
    granularity = body.get("granularity")
    if granularity in GRANULARITY_MAX_RANGE_SECONDS and length > GRANULARITY_MAX_RANGE_SECONDS[granularity]:
        return False
    order_by = body.get("order_by")
    metrics = body.get("metrics")
    if order_by is not None and isinstance(metrics, list) and order_by not in metrics:
        return False
    return True


def _event_time_ok(event):
    if not isinstance(event, dict):
        return True
    value = event.get("timestamp")
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, (int, float)):
        try:
            when = EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            return False
    else:
        when = _time(value)
        if when is None:
            return True
    return max(MIN_EVENT_TIME, _now() - LATENESS + LATENESS_MARGIN) <= when <= _now() + MAX_FUTURE_SKEW


def _event_validator(case):
    schema = case.operation.schema.raw_schema
    event = dict(schema["components"]["schemas"]["Event"])
    event["$defs"] = {}
    return jsonschema.Draft202012Validator(event, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@schemathesis.hook
def filter_case(ctx, case):
    path = case.path
    if _positive(case):
        if path.startswith("/api/metrics/") and path != "/api/metrics/query":
            return _metric_range_ok(case.query)
        if path == "/api/metrics/query":
            return _custom_query_ok(case.body)
        if path == "/api/events":
            return _event_time_ok(case.body)
        if path == "/api/events/batch":
            return not isinstance(case.body, list) or all(_event_time_ok(e) for e in case.body)
    if _negative(case) and path == "/api/events/batch" and isinstance(case.body, list):
        validator = _event_validator(case)
        return not any(validator.is_valid(event) for event in case.body)
    return True
