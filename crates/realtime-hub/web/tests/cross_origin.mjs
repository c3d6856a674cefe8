// A web player on another origin, in headless Chromium (playwright-core).
//
// Run by crates/system-tests/tests/cross_origin_browser.rs, which starts the
// real ingest-gateway and realtime-hub with a key database of their own:
//
//   GATEWAY_URL=http://127.0.0.1:PORT HUB_URL=http://127.0.0.1:PORT \
//     INGEST_API_KEY=<ingest key> HUB_TOKEN=<read key> \
//     node crates/realtime-hub/web/tests/cross_origin.mjs
//
// Optional: CHROMIUM_PATH (default /usr/bin/chromium), WAIT_MS (each wait's
// deadline, default 20000).
//
// The script serves a small player page from an origin of its own (a server on
// 127.0.0.1 with another port than the gateway's and the hub's) and, from that
// page:
//
// 1. POSTs a batch with `fetch` and a key the gateway does not know in
//    `X-API-Key`: the browser sends a preflight (a custom header), the answer
//    is a readable 401 `invalid_credentials`;
// 2. POSTs a batch with `fetch` and the ingest key in `X-API-Key`: preflight
//    (seen through the DevTools protocol: OPTIONS, answered 204 with the
//    page's origin), then 202 with every event accepted;
// 3. sends a batch with `navigator.sendBeacon`, the key in `?api_key=` (no
//    header possible; the body goes as text/plain): queued by the browser and
//    answered 202 (seen through the DevTools protocol);
// 4. opens `new WebSocket(<hub>/ws)` without a token, then with the read
//    token: neither may open (the first has no token, the second comes from a
//    foreign origin);
// 5. asks the harness for a hub that allows this origin
//    (`@allow-origin <origin>` on stdout, answered `hub <url>` on stdin) and
//    opens a socket there with the read token: it opens and a
//    `realtime_metrics` arrives (so step 4 failed for the reasons given, not
//    because this page cannot open sockets at all), and without a token it
//    still does not.
//
// It prints `@page-origin <origin>` and, at the end, `@events <json>` with
// the ids sent per way (`fetch`, `beacon`, `refused`), for the harness to
// look for in the raw topic. Any failure exits non-zero with the reason.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const GATEWAY_URL = requiredEnv('GATEWAY_URL');
const HUB_URL = requiredEnv('HUB_URL');
const INGEST_API_KEY = requiredEnv('INGEST_API_KEY');
const HUB_TOKEN = requiredEnv('HUB_TOKEN');
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT_MS = Number(process.env.WAIT_MS || 20000);

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`cross-origin test: ${name} is not set (see the comment at the top of ${fileURLToPath(import.meta.url)})`);
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

// ---------- the harness ----------

const harnessInput = createInterface({ input: process.stdin });
const harnessLines = harnessInput[Symbol.asyncIterator]();

// A `@request` line on stdout; the harness's one-line answer from stdin.
async function askHarness(request) {
  step(`asking the harness: ${request}`);
  console.log(`@${request}`);
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TestFailure(`the harness did not answer @${request} within ${WAIT_MS} ms`)), WAIT_MS);
  });
  try {
    const next = await Promise.race([harnessLines.next(), deadline]);
    if (next.done) fail(`the harness closed stdin instead of answering @${request}`);
    return next.value.trim();
  } finally {
    clearTimeout(timer);
  }
}

// ---------- the player page, served from its own origin ----------

// What a player embeds: it sends events to the gateway and tries the hub.
// Everything runs in the page (its origin); the test calls these functions.
const PLAYER_JS = `
'use strict';
window.player = {
  async sendWithFetch(gateway, key, events) {
    try {
      const response = await fetch(gateway + '/api/events/batch', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-API-Key': key },
        body: JSON.stringify(events),
      });
      return { status: response.status, body: await response.text() };
    } catch (error) {
      return { status: 0, body: 'fetch failed: ' + error.message };
    }
  },
  sendWithBeacon(gateway, key, events) {
    const url = gateway + '/api/events/batch?api_key=' + encodeURIComponent(key);
    return navigator.sendBeacon(url, JSON.stringify(events));
  },
  // Resolves once the socket closed (or waitMs passed): whether it opened,
  // its close code, whether an error was reported, the first message's type.
  openSocket(url, waitMs) {
    return new Promise((resolve) => {
      const outcome = { opened: false, error: false, closed: false, code: null, firstMessage: null };
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (error) {
        resolve({ ...outcome, error: true, thrown: error.message });
        return;
      }
      const done = () => {
        clearTimeout(timer);
        resolve(outcome);
      };
      const timer = setTimeout(() => {
        if (ws.readyState === WebSocket.OPEN) ws.close(1000);
        done();
      }, waitMs);
      ws.addEventListener('open', () => { outcome.opened = true; });
      ws.addEventListener('error', () => { outcome.error = true; });
      ws.addEventListener('message', (message) => {
        if (outcome.firstMessage !== null) return;
        try {
          outcome.firstMessage = JSON.parse(message.data).type;
        } catch (error) {
          outcome.firstMessage = 'unparsable';
        }
        ws.close(1000);
      });
      ws.addEventListener('close', (event) => {
        outcome.closed = true;
        outcome.code = event.code;
        done();
      });
    });
  },
};
document.getElementById('status').textContent = 'player ready';
`;

const PLAYER_HTML = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>A player on another origin</title>
<script src="/player.js" defer></script></head>
<body><p id="status">loading</p></body>
</html>
`;

function startPageServer() {
  const server = createServer((req, res) => {
    const headers = { 'cache-control': 'no-store' };
    if (req.url === '/') {
      res.writeHead(200, { ...headers, 'content-type': 'text/html; charset=utf-8' });
      res.end(PLAYER_HTML);
    } else if (req.url === '/player.js') {
      res.writeHead(200, { ...headers, 'content-type': 'text/javascript; charset=utf-8' });
      res.end(PLAYER_JS);
    } else if (req.url === '/favicon.ico') {
      res.writeHead(204, headers);
      res.end();
    } else {
      res.writeHead(404, headers);
      res.end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// ---------- events ----------

const run = randomUUID().slice(0, 8);

function batch(way, count) {
  const session = `session-${way}-${run}`;
  const base = Date.now() - 5000;
  return Array.from({ length: count }, (_, i) => ({
    event_id: randomUUID(),
    event_type: i === 0 ? 'video_start' : 'video_progress',
    user_id: `user-${way}-${run}`,
    session_id: session,
    video_id: `video-${way}-${run}`,
    timestamp: new Date(base + i * 100).toISOString(),
    properties: i === 0 ? { device_type: 'desktop', bitrate_kbps: 2500 } : { position_seconds: i },
  }));
}

// ---------- the test ----------

async function main(browser, pageOrigin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`uncaught exception: ${error.message}`));
  // Chromium explains refused requests (CORS, WebSocket handshakes) here only.
  page.on('console', (message) => {
    if (message.type() === 'error') step(`page console: ${message.text().split(INGEST_API_KEY).join('<key>').split(HUB_TOKEN).join('<token>')}`);
  });

  // The preflights, as the DevTools protocol reports them.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const requests = new Map();
  const preflights = [];
  cdp.on('Network.requestWillBeSent', (event) => {
    requests.set(event.requestId, event.request);
    if (event.request.method === 'OPTIONS') preflights.push({ id: event.requestId, request: event.request, status: null });
  });
  const statuses = new Map();
  cdp.on('Network.responseReceived', (event) => {
    statuses.set(event.requestId, event.response.status);
    const preflight = preflights.find((p) => p.id === event.requestId);
    if (preflight) {
      preflight.status = event.response.status;
      preflight.headers = Object.fromEntries(
        Object.entries(event.response.headers).map(([name, value]) => [name.toLowerCase(), value]),
      );
    }
  });

  step(`opening the player page ${pageOrigin}/`);
  const response = await page.goto(`${pageOrigin}/`, { waitUntil: 'load', timeout: WAIT_MS });
  if (!response || response.status() !== 200) fail(`the page server answered ${response && response.status()}`);
  await page.waitForFunction(() => document.getElementById('status').textContent === 'player ready', null, {
    timeout: WAIT_MS,
  });
  const origin = await page.evaluate(() => location.origin);
  if (origin === new URL(GATEWAY_URL).origin || origin === new URL(HUB_URL).origin) {
    fail(`the page's origin ${origin} is the gateway's or the hub's`);
  }

  // 1. A key the gateway does not know: refused, and the refusal is readable.
  const refused = batch('refused', 2);
  const wrongKey = 'ak_' + '0'.repeat(48);
  const refusal = await page.evaluate(([g, k, e]) => window.player.sendWithFetch(g, k, e), [GATEWAY_URL, wrongKey, refused]);
  step(`fetch with an unknown key: ${refusal.status} ${refusal.body}`);
  if (refusal.status !== 401 || !refusal.body.includes('invalid_credentials')) {
    fail(`fetch with an unknown key answered ${refusal.status} ${refusal.body}, expected a readable 401 invalid_credentials`);
  }

  // 2. fetch with the ingest key in X-API-Key: a preflight, then 202.
  const fetched = batch('fetch', 3);
  const sent = await page.evaluate(([g, k, e]) => window.player.sendWithFetch(g, k, e), [GATEWAY_URL, INGEST_API_KEY, fetched]);
  step(`fetch with the ingest key: ${sent.status} ${sent.body}`);
  if (sent.status !== 202) fail(`fetch with the ingest key answered ${sent.status} ${sent.body}, expected 202`);
  const answer = JSON.parse(sent.body);
  if (answer.accepted !== fetched.length || (answer.rejected && answer.rejected.length)) {
    fail(`the gateway did not accept the ${fetched.length} fetched events: ${sent.body}`);
  }
  const started = Date.now();
  let preflight;
  while (Date.now() - started < WAIT_MS) {
    preflight = preflights.find((p) => p.request.url.startsWith(`${GATEWAY_URL}/api/events/batch`) && p.status !== null);
    if (preflight) break;
    await new Promise((done) => setTimeout(done, 50));
  }
  if (!preflight) {
    const seen = [...requests.values()].map((r) => `${r.method} ${r.url}`);
    fail(`no CORS preflight to the gateway was seen; requests: ${JSON.stringify(seen)}`);
  }
  const asked = (preflight.request.headers['Access-Control-Request-Headers'] || '').toLowerCase();
  step(`preflight: OPTIONS answered ${preflight.status}, allow-origin ${preflight.headers['access-control-allow-origin']}, asked for headers "${asked}"`);
  if (preflight.status !== 204) fail(`the preflight was answered ${preflight.status}, expected 204`);
  if (preflight.headers['access-control-allow-origin'] !== origin) {
    fail(`the preflight allowed origin ${preflight.headers['access-control-allow-origin']}, expected ${origin}`);
  }
  if (!asked.includes('x-api-key')) fail(`the preflight did not ask for x-api-key: "${asked}"`);

  // 3. sendBeacon: the key in the URL, the body as text/plain.
  const beaconed = batch('beacon', 3);
  const queued = await page.evaluate(([g, k, e]) => window.player.sendWithBeacon(g, k, e), [GATEWAY_URL, INGEST_API_KEY, beaconed]);
  step(`sendBeacon queued: ${queued}`);
  if (queued !== true) fail('navigator.sendBeacon refused to queue the batch');
  const beaconStarted = Date.now();
  let beaconStatus = null;
  while (beaconStatus === null && Date.now() - beaconStarted < WAIT_MS) {
    for (const [id, request] of requests) {
      if (request.method === 'POST' && request.url.startsWith(`${GATEWAY_URL}/api/events/batch?api_key=`)) {
        beaconStatus = statuses.has(id) ? statuses.get(id) : null;
      }
    }
    if (beaconStatus === null) await new Promise((done) => setTimeout(done, 50));
  }
  step(`the beacon was answered ${beaconStatus}`);
  if (beaconStatus !== 202) fail(`the beacon's POST was answered ${beaconStatus} (null: no answer seen), expected 202`);

  // 4. The hub's socket from this page: without a token, and with the read
  // token (a foreign origin): neither opens.
  const hubWs = HUB_URL.replace(/^http/, 'ws') + '/ws';
  const openAttempt = (url) => page.evaluate(([u, w]) => window.player.openSocket(u, w), [url, WAIT_MS]);
  const noToken = await openAttempt(hubWs);
  step(`WebSocket without a token: ${JSON.stringify(noToken)}`);
  if (noToken.opened || !noToken.closed) fail(`the socket without a token was not refused: ${JSON.stringify(noToken)}`);
  const withToken = await openAttempt(`${hubWs}?token=${encodeURIComponent(HUB_TOKEN)}`);
  step(`WebSocket with the read token, from this origin: ${JSON.stringify(withToken)}`);
  if (withToken.opened || !withToken.closed) {
    fail(`the socket from a foreign origin was not refused: ${JSON.stringify(withToken)}`);
  }

  // 5. A hub that allows this origin: the same page opens a socket with the
  // token (and still not without).
  const answerLine = await askHarness(`allow-origin ${origin}`);
  if (!answerLine.startsWith('hub ')) fail(`the harness answered ${JSON.stringify(answerLine)}, expected "hub <url>"`);
  const allowingWs = answerLine.slice(4).replace(/\/+$/, '').replace(/^http/, 'ws') + '/ws';
  const allowed = await openAttempt(`${allowingWs}?token=${encodeURIComponent(HUB_TOKEN)}`);
  step(`WebSocket with the read token, to a hub allowing this origin: ${JSON.stringify(allowed)}`);
  if (!allowed.opened || !allowed.firstMessage) {
    fail(`the socket to a hub allowing this origin did not open and speak: ${JSON.stringify(allowed)}`);
  }
  const allowedNoToken = await openAttempt(allowingWs);
  step(`WebSocket without a token, to that hub: ${JSON.stringify(allowedNoToken)}`);
  if (allowedNoToken.opened || !allowedNoToken.closed) {
    fail(`the socket without a token was not refused by the hub allowing this origin: ${JSON.stringify(allowedNoToken)}`);
  }

  if (problems.length) fail(`the page reported problems:\n  ${problems.join('\n  ')}`);
  await context.close();
  console.log(
    `@events ${JSON.stringify({
      fetch: fetched.map((e) => e.event_id),
      beacon: beaconed.map((e) => e.event_id),
      refused: refused.map((e) => e.event_id),
    })}`,
  );
}

let browser;
let server;
let failed = false;
try {
  server = await startPageServer();
  const pageOrigin = `http://127.0.0.1:${server.address().port}`;
  console.log(`@page-origin ${pageOrigin}`);
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ['--no-sandbox'] });
  await main(browser, pageOrigin);
  console.log('cross-origin test passed');
} catch (error) {
  failed = true;
  const reason = error instanceof TestFailure ? error.message : error.stack || String(error);
  console.error(`\ncross-origin test FAILED: ${reason}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  if (server) server.close();
  harnessInput.close();
  process.stdin.destroy();
}
process.exitCode = failed ? 1 : 0;
