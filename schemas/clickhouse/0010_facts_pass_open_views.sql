-- The views of the two newest hours a facts pass covers (the hour of its
-- covered_until and the one before), from video_hour_totals after the pass:
-- the size of what an exact read of top videos rebuilds. query-api answers
-- top videos' open windows from the pass's totals when it is at least
-- `freshness.top_from_pass_min_views`. Passes recorded before this migration
-- read 0 (exact reads) until the next pass.
--
-- One statement on purpose: ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS,
-- so a failed attempt leaves nothing applied and the retry starts afresh.
ALTER TABLE view_facts_passes ADD COLUMN open_views UInt64 DEFAULT 0;
