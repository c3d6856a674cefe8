// Browser test of the realtime-hub dashboard in headless Chromium (playwright-core).
//
// Run by crates/system-tests/tests/dashboard_browser.rs, which starts the real
// ingest-gateway, stream-processor and realtime-hub on isolated topics and a
// key database of their own and passes their addresses and keys:
//
//   HUB_URL=http://127.0.0.1:PORT GATEWAY_URL=http://127.0.0.1:PORT \
//     HUB_TOKEN=<read key> INGEST_API_KEY=<ingest key> \
//     node crates/realtime-hub/web/tests/dashboard.mjs
//
// Optional: CHROMIUM_PATH (default /usr/bin/chromium), SCREENSHOT_PATH
// (default <workspace>/target/dashboard.png), WAIT_MS (each wait's deadline,
// default 20000), HUB_RESTART=1 (the hub-restart phase: the script prints
// `@stop-hub`, then `@start-hub`, and waits for `stopped`, then `started`, on
// its stdin; then, at the very end, `@revoke-token`: the harness stops the
// hub, revokes HUB_TOKEN and starts a new hub, and answers `revoked`).
//
// Signing in: the dashboard opened without a token shows the sign-in form
// (and opens no WebSocket); a token the hub does not know and a key without
// the read scope (INGEST_API_KEY) are refused with their messages and not
// kept; HUB_TOKEN typed in signs in and is kept for the tab (a reload stays
// signed in); a second, fresh tab opened with #token=<HUB_TOKEN> signs in
// without the form and the token leaves the address bar.
//
// It opens the dashboard, waits for the connection, checks the initial
// (empty) figures, POSTs a batch of events to the gateway, waits until the
// totals, the top videos and the feed show exactly what that batch implies,
// applies a video filter to the feed and checks that only matching events
// are shown afterwards, has the harness restart the hub (the page shows it is
// reconnecting with a growing backoff, reconnects by itself, shows the same
// figures and keeps its filter), and saves a full-page screenshot. With
// "Change token" signs out (form shown, token forgotten, socket closed), a
// #token= link followed on the open page signs in again, and with
// HUB_RESTART=1 it has the token revoked (the page must notice when its
// socket is refused, forget the token and show the form with the reason).
// It also saves dashboard-sign-in.png (the form) beside the screenshot. Any failure exits
// non-zero with the reason, the page's console errors and a screenshot of
// the failing page (dashboard-failure.png beside the screenshot).
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const HUB_URL = requiredEnv('HUB_URL');
const GATEWAY_URL = requiredEnv('GATEWAY_URL');
const HUB_TOKEN = requiredEnv('HUB_TOKEN');
const INGEST_API_KEY = requiredEnv('INGEST_API_KEY');
// Must match TOKEN_KEY in src/app.js.
const TOKEN_KEY = 'realtime-hub.token';
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WORKSPACE = join(here, '..', '..', '..', '..');
const SCREENSHOT_PATH = resolve(process.env.SCREENSHOT_PATH || join(WORKSPACE, 'target', 'dashboard.png'));
const WAIT_MS = Number(process.env.WAIT_MS || 20000);
const POLL_MS = 100;
const HUB_RESTART = process.env.HUB_RESTART === '1';
// Must match BACKOFF_BASE_MS in src/app.js.
const BACKOFF_BASE_MS = 500;

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    const script = fileURLToPath(import.meta.url);
    console.error(`dashboard test: ${name} is not set (see the comment at the top of ${script})`);
    process.exit(2);
  }
  return value.replace(/\/+$/, '');
}

class TestFailure extends Error {}

function fail(message) {
  throw new TestFailure(message);
}

function step(message) {
  console.log(`[${new Date().toISOString()}] ${message}`);
}

// ---------- the harness (browser.rs), for the hub restart ----------

const harnessInput = HUB_RESTART ? createInterface({ input: process.stdin }) : null;
const harnessLines = harnessInput ? harnessInput[Symbol.asyncIterator]() : null;

// Asks the harness to do something (a `@request` line on stdout) and waits
// for its one-line answer on stdin.
async function askHarness(request, answer) {
  step(`asking the harness to ${request}`);
  console.log(`@${request}`);
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new TestFailure(`the harness did not answer @${request} within ${WAIT_MS} ms`)),
      WAIT_MS,
    );
  });
  try {
    const next = await Promise.race([harnessLines.next(), deadline]);
    if (next.done || next.value.trim() !== answer) {
      fail(`the harness answered @${request} with ${JSON.stringify(next.value)}, expected ${JSON.stringify(answer)}`);
    }
  } finally {
    clearTimeout(timer);
  }
}

// ---------- the events ----------

const run = randomUUID().slice(0, 8);
const videos = { a: `video-a-${run}`, b: `video-b-${run}`, c: `video-c-${run}` };

// One view per entry: its video and its events in order. Client timestamps
// increase through the batch, so "latest event of a view" is unambiguous.
function firstBatch(baseMs) {
  const views = [
    // Two viewers of video a: the latest reported bitrate counts.
    [
      videos.a,
      [
        ['video_start', { bitrate_kbps: 2500 }],
        ['video_progress', { position_seconds: 5, bitrate_kbps: 2500 }],
      ],
    ],
    [
      videos.a,
      [
        ['video_start', { bitrate_kbps: 3000 }],
        ['video_progress', { position_seconds: 4, bitrate_kbps: 4500 }],
      ],
    ],
    // Video b: one viewer still playing (its progress reports no bitrate),
    // one ended by a fatal error (fatal is the default for video_error).
    [
      videos.b,
      [
        ['video_start', { bitrate_kbps: 1800 }],
        ['video_progress', { position_seconds: 3 }],
        ['video_progress', { position_seconds: 6 }],
      ],
    ],
    [videos.b, [['video_start', { bitrate_kbps: 1200 }], ['video_error', { error_code: 'MEDIA_ERR_DECODE' }]]],
    // Video c: one viewer with a non-fatal error (still watching), one completed.
    [videos.c, [['video_start', { bitrate_kbps: 5000 }], ['video_error', { error_code: 'NET_RETRY', fatal: false }]]],
    [
      videos.c,
      [
        ['video_start', { bitrate_kbps: 800 }],
        ['video_progress', { position_seconds: 9, bitrate_kbps: 800 }],
        ['video_complete', { position_seconds: 10 }],
      ],
    ],
  ];
  const events = [];
  let at = baseMs;
  views.forEach(([video, steps], index) => {
    const session = `session-${run}-${index}`;
    for (const [eventType, properties] of steps) {
      at += 50;
      events.push(makeEvent(eventType, session, video, at, properties));
    }
  });
  return events;
}

// For the filtered feed: per session, events of other videos first and the
// matching ones last. A session's events share a Kafka partition, in order,
// so once its last (matching) event is shown every event before it has been
// through the filter.
function secondBatch(baseMs) {
  const events = [];
  let at = baseMs;
  const plan = [
    [videos.a, videos.b],
    [videos.c, videos.b],
    [videos.a, videos.c, videos.b],
  ];
  plan.forEach((sequence, index) => {
    const session = `session-${run}-filter-${index}`;
    for (const video of sequence) {
      at += 50;
      events.push(makeEvent('video_start', session, video, at, { bitrate_kbps: 1000 }));
      at += 50;
      events.push(makeEvent('video_progress', session, video, at, { position_seconds: 1 }));
    }
  });
  return events;
}

// After the hub restart: one session watches video a, then video b. Once
// its video b events are in the (filtered) feed, its video a events have
// been through the filter too.
function thirdBatch(baseMs) {
  const session = `session-${run}-after-restart`;
  let at = baseMs;
  const events = [];
  for (const video of [videos.a, videos.b]) {
    at += 50;
    events.push(makeEvent('video_start', session, video, at, { bitrate_kbps: 2000 }));
    at += 50;
    events.push(makeEvent('video_progress', session, video, at, { position_seconds: 1, bitrate_kbps: 2000 }));
  }
  return events;
}

function makeEvent(eventType, session, video, timestampMs, properties) {
  return {
    event_id: randomUUID(),
    event_type: eventType,
    user_id: `user-${session}`,
    session_id: session,
    video_id: video,
    timestamp: new Date(timestampMs).toISOString(),
    properties: { device_type: 'desktop', ...properties },
  };
}

// The realtime figures of docs/metrics.md for events all inside the window.
function expectedFigures(events) {
  const byView = new Map();
  for (const event of events) {
    const key = event.session_id + '\u0000' + event.video_id;
    if (!byView.has(key)) byView.set(key, []);
    byView.get(key).push(event);
  }
  let viewers = 0;
  let bandwidthKbps = 0;
  const perVideo = new Map();
  for (const viewEvents of byView.values()) {
    viewEvents.sort((x, y) => Date.parse(x.timestamp) - Date.parse(y.timestamp));
    const last = viewEvents[viewEvents.length - 1];
    const fatal = last.event_type === 'video_error' && last.properties.fatal !== false;
    if (last.event_type === 'video_complete' || fatal) continue;
    viewers += 1;
    const withBitrate = viewEvents.filter((e) => typeof e.properties.bitrate_kbps === 'number');
    if (withBitrate.length) bandwidthKbps += withBitrate[withBitrate.length - 1].properties.bitrate_kbps;
    perVideo.set(last.video_id, (perVideo.get(last.video_id) || 0) + 1);
  }
  const errors = events.filter((e) => e.event_type === 'video_error').length;
  const top = [...perVideo.entries()]
    .sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
    .map(([video_id, count]) => ({ video_id, viewers: count }));
  return {
    concurrent_viewers: viewers,
    active_streams: perVideo.size,
    events_per_second: events.length / 60,
    error_rate: events.length ? errors / events.length : 0,
    bandwidth_gbps: bandwidthKbps / 1000000,
    top,
  };
}

async function postBatch(events) {
  const response = await fetch(`${GATEWAY_URL}/api/events/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': INGEST_API_KEY },
    body: JSON.stringify(events),
  });
  const text = await response.text();
  if (response.status !== 202) fail(`POST /api/events/batch answered ${response.status}: ${text}`);
  const answer = JSON.parse(text);
  if (answer.accepted !== events.length || (answer.rejected && answer.rejected.length)) {
    fail(`the gateway did not accept all ${events.length} events: ${text}`);
  }
}

// ---------- reading the page ----------

// Everything the checks look at, read in one go.
function readDashboard(page) {
  return page.evaluate(() => {
    const stat = (id) => {
      const el = document.getElementById(id);
      return { text: el.textContent, value: el.dataset.value === '' ? null : Number(el.dataset.value) };
    };
    const errorEl = document.getElementById('filter-error');
    const connection = document.getElementById('connection-state').dataset;
    return {
      connection: connection.state,
      attempt: Number(connection.attempt || 0),
      retryInMs: connection.retryInMs === undefined ? null : Number(connection.retryInMs),
      asOf: document.getElementById('as-of').dateTime,
      concurrent_viewers: stat('concurrent-viewers'),
      active_streams: stat('active-streams'),
      events_per_second: stat('events-per-second'),
      error_rate: stat('error-rate'),
      bandwidth_gbps: stat('bandwidth'),
      bandwidthUnit: document.getElementById('bandwidth-unit').textContent,
      top: Array.from(document.querySelectorAll('#top-videos-body tr')).map((row) => ({
        video_id: row.dataset.videoId,
        viewers: Number(row.lastElementChild.textContent.replace(/,/g, '')),
      })),
      feed: Array.from(document.querySelectorAll('#event-feed li')).map((li) => ({
        event_id: li.dataset.eventId,
        event_type: li.dataset.eventType,
        video_id: li.dataset.videoId,
        sample_rate: li.dataset.sampleRate,
      })),
      filterStatus: document.getElementById('filter-status').textContent,
      filterError: errorEl.hidden ? '' : errorEl.textContent,
    };
  });
}

// The sign-in state, read in one go.
function readAuth(page) {
  return page.evaluate((tokenKey) => {
    const form = document.getElementById('sign-in');
    const error = document.getElementById('token-error');
    const input = document.getElementById('token-input');
    const label = document.querySelector('label[for="token-input"]');
    return {
      url: location.href,
      connection: document.getElementById('connection-state').dataset.state,
      formShown: !form.hidden && form.getClientRects().length > 0,
      dashboardShown: !document.getElementById('dashboard').hidden,
      signOutShown: !document.getElementById('sign-out').hidden,
      error: error.hidden ? '' : error.textContent,
      inputType: input.type,
      inputValue: input.value,
      label: label ? label.textContent.trim() : null,
      stored: sessionStorage.getItem(tokenKey),
    };
  }, TOKEN_KEY);
}

// Polls the page until `check(snapshot)` returns no complaint, or fails with
// the last complaint after WAIT_MS. `read` takes the snapshot.
async function waitUntil(page, what, check, read = readDashboard) {
  const started = Date.now();
  let complaint = 'not checked yet';
  let snapshot = null;
  while (Date.now() - started < WAIT_MS) {
    snapshot = await read(page);
    complaint = check(snapshot);
    if (!complaint) {
      step(`${what}: after ${Date.now() - started} ms`);
      return snapshot;
    }
    await new Promise((done) => setTimeout(done, POLL_MS));
  }
  const shown = !snapshot
    ? null
    : snapshot.feed
      ? { ...snapshot, feed: `${snapshot.feed.length} rows` }
      : redacted(snapshot);
  fail(`timed out after ${WAIT_MS} ms waiting for ${what}: ${complaint}\npage state: ${JSON.stringify(shown)}`);
}

const FIGURES = ['concurrent_viewers', 'active_streams', 'events_per_second', 'error_rate', 'bandwidth_gbps'];

function figuresComplaint(snapshot, expected) {
  const wrong = FIGURES.filter((name) => snapshot[name].value !== expected[name]).map(
    (name) =>
      `${name} shows ${snapshot[name].value} (text ${JSON.stringify(snapshot[name].text)}), expected ${expected[name]}`,
  );
  return wrong.length ? wrong.join('; ') : null;
}

function feedComplaint(snapshot, events) {
  const shown = new Map(snapshot.feed.map((row) => [row.event_id, row]));
  const missing = events.filter((e) => !shown.has(e.event_id));
  if (missing.length) return `${missing.length} of ${events.length} posted events not in the feed yet`;
  for (const event of events) {
    const row = shown.get(event.event_id);
    if (row.video_id !== event.video_id || row.event_type !== event.event_type || row.sample_rate !== '1') {
      return `feed row ${JSON.stringify(row)} does not match the posted event ${JSON.stringify(event)}`;
    }
  }
  return null;
}

// ---------- the test ----------

function authComplaint(s, wanted) {
  const wrong = [];
  for (const [name, value] of Object.entries(wanted)) {
    if (s[name] !== value) {
      const shown = redacted(s)[name];
      wrong.push(`${name} is ${JSON.stringify(shown)}, expected ${JSON.stringify(value)}`);
    }
  }
  return wrong.length ? wrong.join('; ') : null;
}

// A snapshot of readAuth fit to print: never a token, only whether one is there.
function redacted(s) {
  return { ...s, stored: s.stored === null ? null : '<a token>', inputValue: s.inputValue ? '<text>' : '' };
}

async function signInWith(page, token, what) {
  await page.fill('#token-input', token);
  await page.click('#token-submit');
  step(`submitted ${what}`);
}

// 0. Signing in.
async function signingIn(page, context) {
  step(`opening ${HUB_URL}/ without a token`);
  const response = await page.goto(`${HUB_URL}/`, { waitUntil: 'load', timeout: WAIT_MS });
  if (!response || response.status() !== 200) fail(`GET / answered ${response && response.status()}`);
  const form = await waitUntil(
    page,
    'the sign-in form',
    (s) => authComplaint(s, { formShown: true, dashboardShown: false, connection: 'signed-out', stored: null }),
    readAuth,
  );
  if (form.inputType !== 'password') fail(`the token input is of type ${form.inputType}, expected password`);
  if (!form.label || !/token/i.test(form.label)) fail(`the token input's label reads ${JSON.stringify(form.label)}`);
  if (form.error) fail(`the form shows an error before anything was submitted: ${form.error}`);
  await mkdir(dirname(SCREENSHOT_PATH), { recursive: true });
  await page.screenshot({ path: join(dirname(SCREENSHOT_PATH), 'dashboard-sign-in.png') });
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  if (focused !== 'token-input') fail(`the focus is on ${JSON.stringify(focused)}, expected the token input`);

  refusalsExpected = true;
  await signInWith(page, 'ak_000000000000000000000000000000000000000000000000', 'a token the hub does not know');
  await waitUntil(
    page,
    'the unknown token to be refused',
    (s) =>
      !/this token is not valid/.test(s.error)
        ? `the form's message reads ${JSON.stringify(s.error)}`
        : authComplaint(s, { formShown: true, dashboardShown: false, stored: null }),
    readAuth,
  );
  await signInWith(page, INGEST_API_KEY, 'an ingest key (no read scope)');
  await waitUntil(
    page,
    'the ingest key to be refused for its scope',
    (s) =>
      !/this token lacks the read scope/.test(s.error)
        ? `the form's message reads ${JSON.stringify(s.error)}`
        : authComplaint(s, { formShown: true, dashboardShown: false, stored: null }),
    readAuth,
  );
  refusalsExpected = false;
  if (sockets.length) fail(`the page opened ${sockets.length} WebSocket(s) before it had a valid token`);

  await signInWith(page, HUB_TOKEN, 'the read token');
  const signedIn = await waitUntil(
    page,
    'the dashboard to be signed in and connected',
    (s) =>
      authComplaint(s, { formShown: false, dashboardShown: true, signOutShown: true, connection: 'open', error: '' }),
    readAuth,
  );
  if (signedIn.stored !== HUB_TOKEN) fail('sessionStorage does not hold the read token after signing in');
  if (signedIn.inputValue) fail('the token is still in the form after signing in');
  const socketUrl = sockets[sockets.length - 1];
  if (!socketUrl || new URL(socketUrl).searchParams.get('token') !== HUB_TOKEN) {
    fail('the WebSocket was not opened with ?token=<the read token>');
  }

  step('reloading: the tab keeps its token');
  const opened = sockets.length;
  await page.reload({ waitUntil: 'load', timeout: WAIT_MS });
  await waitUntil(
    page,
    'the reloaded page to connect without asking',
    (s) => authComplaint(s, { formShown: false, dashboardShown: true, connection: 'open' }),
    readAuth,
  );
  if (sockets.length <= opened) fail('the reloaded page opened no WebSocket');

  step('a fresh tab opened with #token=');
  const other = await context.browser().newContext({ viewport: { width: 1000, height: 800 } });
  try {
    const linked = await other.newPage();
    linked.on('pageerror', (error) => problems.push(`uncaught exception (#token= tab): ${error.message}`));
    await linked.goto(`${HUB_URL}/#token=${encodeURIComponent(HUB_TOKEN)}`, { waitUntil: 'load', timeout: WAIT_MS });
    const viaLink = await waitUntil(
      linked,
      'the #token= tab to sign in without the form',
      (s) => authComplaint(s, { formShown: false, dashboardShown: true, connection: 'open' }),
      readAuth,
    );
    if (viaLink.url.includes('token')) fail(`the token is still in the address bar: ${viaLink.url.split('#')[0]}#…`);
    if (viaLink.stored !== HUB_TOKEN) fail('the #token= tab did not keep the token for the session');
  } finally {
    await other.close();
  }
}

async function main(page, context) {
  await signingIn(page, context);

  const initial = await waitUntil(page, 'the connection to be open and the first figures shown', (s) =>
    s.connection !== 'open' ? `connection state is ${s.connection}` : !s.asOf ? 'no realtime_metrics shown yet' : null,
  );
  // The hub reads topics of this test only: nothing has been posted yet.
  const empty = { concurrent_viewers: 0, active_streams: 0, events_per_second: 0, error_rate: 0, bandwidth_gbps: 0 };
  const initialComplaint = figuresComplaint(initial, empty);
  if (initialComplaint) fail(`initial figures are not those of an empty window: ${initialComplaint}`);
  if (initial.feed.length) fail(`the feed is not empty before anything was posted: ${JSON.stringify(initial.feed)}`);
  step(`initial figures: ${FIGURES.map((name) => `${name}=${initial[name].text}`).join(', ')}`);

  // 1. A batch of events changes the totals, the top videos and the feed.
  const first = firstBatch(Date.now() - 10000);
  const expected = expectedFigures(first);
  step(`posting ${first.length} events; expecting ${JSON.stringify(expected)}`);
  await postBatch(first);
  const shown = await waitUntil(page, 'the totals to show the posted events', (s) => figuresComplaint(s, expected));
  // The formatted texts agree with the values (14 events, 2 errors, 13,800 kbps).
  const texts = {
    concurrent_viewers: String(expected.concurrent_viewers),
    active_streams: String(expected.active_streams),
    events_per_second: expected.events_per_second.toFixed(2),
    error_rate: (expected.error_rate * 100).toFixed(2),
    bandwidth_gbps: (expected.bandwidth_gbps * 1000).toFixed(1),
  };
  for (const [name, text] of Object.entries(texts)) {
    if (shown[name].text !== text) {
      fail(`${name} reads ${JSON.stringify(shown[name].text)}, expected ${JSON.stringify(text)}`);
    }
  }
  if (shown.bandwidthUnit !== 'Mbps') {
    fail(`bandwidth unit reads ${JSON.stringify(shown.bandwidthUnit)}, expected "Mbps"`);
  }
  await waitUntil(page, 'the top videos to list the viewers per video', (s) =>
    JSON.stringify(s.top) === JSON.stringify(expected.top)
      ? null
      : `top videos ${JSON.stringify(s.top)}, expected ${JSON.stringify(expected.top)}`,
  );
  await waitUntil(page, 'the feed to show every posted event', (s) => feedComplaint(s, first));

  // 2. A video filter: afterwards the feed shows that video's events only.
  step(`filtering the feed to ${videos.b}`);
  await page.fill('#filter-video-ids', videos.b);
  await page.click('#filter-apply');
  await waitUntil(page, 'the hub to confirm the filter (and the feed to be cleared)', (s) => {
    if (s.filterError) return `the hub answered an error: ${s.filterError}`;
    if (!s.filterStatus.includes(videos.b)) return `filter status reads ${JSON.stringify(s.filterStatus)}`;
    if (s.feed.length) return `${s.feed.length} rows still in the feed`;
    return null;
  });
  const second = secondBatch(Date.now() - 5000);
  const matching = second.filter((e) => e.video_id === videos.b);
  step(`posting ${second.length} events, ${matching.length} of them for ${videos.b}`);
  await postBatch(second);
  const filtered = await waitUntil(page, `the feed to show the events of ${videos.b}`, (s) =>
    feedComplaint(s, matching),
  );
  const others = filtered.feed.filter((row) => row.video_id !== videos.b);
  if (others.length) fail(`the filtered feed shows events of other videos: ${JSON.stringify(others)}`);
  if (filtered.feed.length !== matching.length) {
    fail(`the filtered feed shows ${filtered.feed.length} rows, expected the ${matching.length} matching events`);
  }
  // The totals count every event, whatever the feed's filter.
  const all = expectedFigures([...first, ...second]);
  await waitUntil(page, 'the totals to count both batches', (s) => figuresComplaint(s, all));

  if (HUB_RESTART) await hubRestart(page, [...first, ...second]);

  await mkdir(dirname(SCREENSHOT_PATH), { recursive: true });
  // Clicking scrolled the page; the sticky top bar belongs at the top of the picture.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: SCREENSHOT_PATH, fullPage: true });
  step(`screenshot saved to ${SCREENSHOT_PATH}`);

  await signOut(page);
  await signInThroughFragment(page);
  if (HUB_RESTART) await revoked(page);
}

// 6. The token is revoked and the hub restarted (so the socket closes): the
// page's handshakes are refused, it asks the HTTP API why (401), forgets the
// token and shows the form with the reason.
async function revoked(page) {
  socketErrorsExpected = true;
  refusalsExpected = true;
  await askHarness('revoke-token', 'revoked');
  await waitUntil(
    page,
    'the page to notice the revoked token and ask for another',
    (s) =>
      !/no longer accepts this token/.test(s.error)
        ? `connection ${s.connection}, form message ${JSON.stringify(s.error)}`
        : authComplaint(s, { formShown: true, dashboardShown: false, connection: 'signed-out', stored: null }),
    readAuth,
  );
}

// 4. "Change token": back to the form, the token forgotten, the socket closed.
async function signOut(page) {
  const opened = sockets.length;
  await page.click('#sign-out');
  await waitUntil(
    page,
    'the page to sign out',
    (s) =>
      authComplaint(s, { formShown: true, dashboardShown: false, connection: 'signed-out', stored: null, error: '' }),
    readAuth,
  );
  await waitUntil(
    page,
    'the socket to be closed',
    () => (openSockets.size ? `${openSockets.size} WebSocket(s) still open` : null),
    readAuth,
  );
  if (sockets.length !== opened) fail('the page opened a WebSocket after signing out');
}

// 5. A link with #token= followed on the open page (no reload): signed in again,
// the token gone from the address bar.
async function signInThroughFragment(page) {
  await page.evaluate((token) => {
    location.hash = 'token=' + encodeURIComponent(token);
  }, HUB_TOKEN);
  const shown = await waitUntil(
    page,
    'the page to sign in with the #token= it was sent to',
    (s) => authComplaint(s, { formShown: false, dashboardShown: true, connection: 'open' }),
    readAuth,
  );
  if (shown.url.includes('token')) fail(`the token is still in the address bar: ${shown.url.split('#')[0]}#…`);
  if (shown.stored !== HUB_TOKEN) fail('the token from #token= was not kept for the session');
}

// 3. The hub goes away: the page says so and retries with a growing backoff.
// A new hub on the same address: the page reconnects by itself, shows the
// same window (the new hub refills it from the partials topic) and sends its
// filter again.
async function hubRestart(page, posted) {
  socketErrorsExpected = true;
  await askHarness('stop-hub', 'stopped');
  const waiting = await waitUntil(page, 'the page to show it is reconnecting, on its third attempt', (s) => {
    if (s.connection !== 'reconnecting') return `connection state is ${s.connection}`;
    if (s.attempt < 3) return `on attempt ${s.attempt}`;
    return null;
  });
  // Attempt n waits between half and all of BACKOFF_BASE_MS × 2^(n-1).
  const ceiling = BACKOFF_BASE_MS * 2 ** (waiting.attempt - 1);
  if (!(waiting.retryInMs >= ceiling / 2 && waiting.retryInMs <= ceiling)) {
    fail(`attempt ${waiting.attempt} retries in ${waiting.retryInMs} ms, expected ${ceiling / 2}–${ceiling} ms`);
  }
  step(`attempt ${waiting.attempt} retries in ${waiting.retryInMs} ms`);
  await askHarness('start-hub', 'started');
  await waitUntil(page, 'the page to reconnect to the new hub', (s) =>
    s.connection !== 'open' ? `connection state is ${s.connection} (attempt ${s.attempt})` : null,
  );
  socketErrorsExpected = false;
  // The figures on the page until then are the old hub's: wait for newer ones.
  await waitUntil(page, "the new hub's totals to count everything posted before", (s) =>
    Date.parse(s.asOf) > Date.parse(waiting.asOf)
      ? figuresComplaint(s, expectedFigures(posted))
      : `the figures are still those of ${waiting.asOf}`,
  );

  const third = thirdBatch(Date.now() - 2000);
  const matching = third.filter((e) => e.video_id === videos.b);
  step(`posting ${third.length} events, ${matching.length} of them for ${videos.b}`);
  await postBatch(third);
  const shown = await waitUntil(page, `the feed to show the new events of ${videos.b}`, (s) =>
    feedComplaint(s, matching),
  );
  const others = shown.feed.filter((row) => row.video_id !== videos.b);
  if (others.length) fail(`after reconnecting, the feed shows events of other videos: ${JSON.stringify(others)}`);
  await waitUntil(page, 'the totals to count all three batches', (s) =>
    figuresComplaint(s, expectedFigures([...posted, ...third])),
  );
}

// While the hub is down, Chromium reports each refused WebSocket (and the
// page's failed token checks) as console errors; refused tokens show as
// failed loads (401/403).
let socketErrorsExpected = false;
let refusalsExpected = false;
// The URL of every WebSocket the page opened, and those still open.
const sockets = [];
const openSockets = new Set();
const problems = [];
let browser;
let page;
let failed = false;
try {
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  page = await context.newPage();
  page.on('websocket', (socket) => {
    sockets.push(socket.url());
    openSockets.add(socket);
    socket.on('close', () => openSockets.delete(socket));
  });
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    if (socketErrorsExpected && text.startsWith('WebSocket connection to')) return;
    if (socketErrorsExpected && text.startsWith('Failed to load resource: net::ERR_CONNECTION_REFUSED')) return;
    if (refusalsExpected && /^Failed to load resource: the server responded with a status of 40[13]/.test(text)) return;
    // Never echo a token into the test's output.
    problems.push(`console error: ${text.split(HUB_TOKEN).join('<token>')}`);
  });
  page.on('pageerror', (error) => problems.push(`uncaught exception: ${error.message}`));
  page.on('requestfailed', (request) => {
    // The WebSocket is closed on purpose when the browser closes; anything else is a problem.
    const url = new URL(request.url());
    // The page's token check while the hub is down.
    if (socketErrorsExpected && url.pathname === '/api/metrics/realtime') return;
    // A token check the browser itself cancelled (a reload or a closing tab
    // while it was in flight; the page never aborts one): not a failure of
    // the hub, which shows as a connection error or an HTTP status instead.
    if (url.pathname === '/api/metrics/realtime' && request.failure()?.errorText === 'net::ERR_ABORTED') return;
    if (!request.url().startsWith('ws')) {
      problems.push(`request failed: ${url.origin}${url.pathname} (${request.failure()?.errorText})`);
    }
  });
  await main(page, context);
  if (problems.length) fail(`the page reported ${problems.length} problem(s)`);
  console.log('dashboard test passed');
} catch (error) {
  failed = true;
  const reason = error instanceof TestFailure ? error.message : error.stack || String(error);
  console.error(`\ndashboard test FAILED: ${reason}`);
  if (problems.length) console.error(`page problems:\n  ${problems.join('\n  ')}`);
  if (page) {
    const failurePath = join(dirname(SCREENSHOT_PATH), 'dashboard-failure.png');
    try {
      await mkdir(dirname(failurePath), { recursive: true });
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: failurePath, fullPage: true });
      console.error(`screenshot of the failing page: ${failurePath}`);
    } catch (screenshotError) {
      console.error(`no failure screenshot: ${screenshotError.message}`);
    }
  }
} finally {
  if (browser) await browser.close().catch(() => {});
  // An open stdin would keep node running.
  if (harnessInput) harnessInput.close();
  process.stdin.destroy();
}
process.exitCode = failed ? 1 : 0;
