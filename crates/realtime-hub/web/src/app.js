// The realtime-hub dashboard: one WebSocket to /ws, totals, 15-minute charts,
// top videos and a filtered live event feed. Plain JS, no framework; uPlot is
// loaded before this file (see index.html). Never uses innerHTML for data.
//
// The hub wants a `read` token on /ws (as ?token=, browsers cannot set headers
// on a WebSocket) and on /api/metrics/realtime. The page asks for it once per
// browser tab (sessionStorage) or takes it from the URL fragment
// (#token=<key>, removed from the address bar at once), checks it with
// GET /api/metrics/realtime and only then opens the socket.
(function () {
  'use strict';

  const CHART_SECONDS = 15 * 60;
  const FEED_LIMIT = 200;
  const STALE_AFTER_MS = 3500;
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const COLORS = { viewers: '#58a6ff', events: '#3fb950', errors: '#ff7b72', bandwidth: '#d2a8ff' };
  const TOKEN_KEY = 'realtime-hub.token';
  const AXIS = '#a3adb8';
  const GRID = 'rgba(240, 246, 252, 0.08)';

  const $ = (id) => document.getElementById(id);
  const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

  // ---------- formatting ----------
  function decimals(value, small, medium) {
    const abs = Math.abs(value);
    if (abs === 0) return '0';
    if (abs < 10) return value.toFixed(small);
    if (abs < 1000) return value.toFixed(medium);
    return integer.format(value);
  }
  const format = {
    count: (v) => integer.format(v),
    perSecond: (v) => decimals(v, 2, 1),
    percent: (v) => (v === 0 ? '0' : v < 0.01 ? v.toFixed(3) : v.toFixed(2)),
    gbps: (v) => (v === 0 ? '0' : v < 0.01 ? v.toFixed(4) : v < 10 ? v.toFixed(3) : decimals(v, 2, 1)),
  };

  // ---------- series and charts ----------
  const series = { t: [], viewers: [], events: [], errors: [], bandwidth: [] };
  let intervalSeconds = 1;

  function pushPoint(m) {
    const t = Date.parse(m.as_of) / 1000;
    if (!Number.isFinite(t)) return;
    const last = series.t.length ? series.t[series.t.length - 1] : null;
    if (last !== null && t <= last) return;
    if (last !== null && t - last > 3 * intervalSeconds) {
      // A gap (disconnected): break the lines instead of joining across it.
      series.t.push(last + intervalSeconds);
      series.viewers.push(null);
      series.events.push(null);
      series.errors.push(null);
      series.bandwidth.push(null);
    }
    series.t.push(t);
    series.viewers.push(m.concurrent_viewers);
    series.events.push(m.events_per_second);
    series.errors.push(m.error_rate * 100);
    series.bandwidth.push(m.bandwidth_gbps);
    const oldest = t - CHART_SECONDS;
    let drop = 0;
    while (drop < series.t.length && series.t[drop] < oldest) drop++;
    if (drop > 0) for (const key of Object.keys(series)) series[key].splice(0, drop);
  }

  function resetSeries() {
    for (const key of Object.keys(series)) series[key].length = 0;
  }

  const charts = [];

  function makeChart(container, key, label, formatValue) {
    if (typeof uPlot !== 'function') return null;
    const color = COLORS[key];
    const opts = {
      width: Math.max(240, container.clientWidth),
      height: 190,
      padding: [10, 12, 0, 4],
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { show: true, live: true },
      scales: {
        x: {
          time: true,
          range: (u, min, max) => {
            const end = series.t.length ? series.t[series.t.length - 1] : Date.now() / 1000;
            return [end - CHART_SECONDS, end];
          },
        },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] },
      },
      axes: [
        { stroke: AXIS, grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID, width: 1 } },
        {
          stroke: AXIS,
          size: 64,
          grid: { stroke: GRID, width: 1 },
          ticks: { stroke: GRID, width: 1 },
          values: (u, splits) => splits.map(formatValue),
        },
      ],
      series: [
        { label: 'time' },
        {
          label,
          stroke: color,
          width: 2,
          fill: color + '22',
          points: { show: false },
          value: (u, v) => (v == null ? '—' : formatValue(v)),
        },
      ],
    };
    const chart = new uPlot(opts, [[], []], container);
    charts.push({ chart, key, container });
    return chart;
  }

  function drawCharts() {
    for (const { chart, key } of charts) chart.setData([series.t, series[key]]);
  }

  function resizeCharts() {
    for (const { chart, container } of charts) {
      const width = Math.max(240, container.clientWidth);
      if (Math.abs(chart.width - width) > 1) chart.setSize({ width, height: 190 });
    }
  }

  // ---------- totals and top videos ----------
  function setStat(id, value, text) {
    const el = $(id);
    el.textContent = text;
    el.dataset.value = String(value);
  }

  function showMetrics(m) {
    setStat('concurrent-viewers', m.concurrent_viewers, format.count(m.concurrent_viewers));
    setStat('active-streams', m.active_streams, format.count(m.active_streams));
    setStat('events-per-second', m.events_per_second, format.perSecond(m.events_per_second));
    setStat('error-rate', m.error_rate, format.percent(m.error_rate * 100));
    if (m.bandwidth_gbps > 0 && m.bandwidth_gbps < 1) {
      setStat('bandwidth', m.bandwidth_gbps, decimals(m.bandwidth_gbps * 1000, 2, 1));
      $('bandwidth-unit').textContent = 'Mbps';
    } else {
      setStat('bandwidth', m.bandwidth_gbps, format.gbps(m.bandwidth_gbps));
      $('bandwidth-unit').textContent = 'Gbps';
    }
    const asOf = new Date(m.as_of);
    const time = $('as-of');
    time.dateTime = m.as_of;
    time.textContent = asOf.toLocaleTimeString();
    $('window-label').textContent = '(last ' + m.window_seconds + ' s)';
    $('window-seconds').textContent = String(m.window_seconds);
  }

  function showTopVideos(videos) {
    const body = $('top-videos-body');
    const rows = document.createDocumentFragment();
    const most = videos.reduce((max, v) => Math.max(max, v.viewers), 0) || 1;
    videos.forEach((video, index) => {
      const row = document.createElement('tr');
      row.dataset.videoId = video.video_id;
      const rank = document.createElement('td');
      rank.textContent = String(index + 1);
      const name = document.createElement('td');
      name.className = 'video';
      name.textContent = video.video_id;
      const bar = document.createElement('span');
      bar.className = 'bar';
      bar.style.width = Math.max(2, Math.round((100 * video.viewers) / most)) + '%';
      name.appendChild(bar);
      const viewers = document.createElement('td');
      viewers.className = 'num';
      viewers.textContent = format.count(video.viewers);
      row.append(rank, name, viewers);
      rows.appendChild(row);
    });
    body.replaceChildren(rows);
    $('top-videos-empty').hidden = videos.length > 0;
  }

  // ---------- live feed ----------
  let paused = false;
  let pending = [];
  let missedWhilePaused = 0;
  let flushScheduled = false;

  function eventRow(event, sampleRate) {
    const row = document.createElement('li');
    row.dataset.eventId = event.event_id;
    row.dataset.eventType = event.event_type;
    row.dataset.videoId = event.video_id;
    row.dataset.sampleRate = String(sampleRate);
    const time = document.createElement('time');
    time.className = 'time';
    time.dateTime = event.received_at || event.timestamp;
    time.textContent = new Date(event.received_at || event.timestamp).toLocaleTimeString();
    const type = document.createElement('span');
    type.className = 'type';
    type.dataset.type = event.event_type;
    type.textContent = event.event_type;
    const video = document.createElement('span');
    video.className = 'ids video';
    video.title = event.video_id;
    video.append(label('video '), event.video_id);
    const session = document.createElement('span');
    session.className = 'ids session';
    session.title = event.session_id + (event.user_id ? ' / ' + event.user_id : '');
    session.append(label(event.user_id ? 'user ' : 'session '), event.user_id || event.session_id);
    row.append(time, type, video, session);
    return row;
  }

  function label(text) {
    const span = document.createElement('span');
    span.className = 'label';
    span.textContent = text;
    return span;
  }

  function queueEvent(event, sampleRate) {
    showSampleRate(sampleRate);
    if (paused) {
      missedWhilePaused++;
      $('feed-pause').textContent = 'Resume feed (' + integer.format(missedWhilePaused) + ' new)';
      return;
    }
    pending.push([event, sampleRate]);
    if (pending.length > FEED_LIMIT) pending = pending.slice(-FEED_LIMIT);
    if (!flushScheduled) {
      flushScheduled = true;
      requestAnimationFrame(flushEvents);
    }
  }

  function flushEvents() {
    flushScheduled = false;
    const feed = $('event-feed');
    const rows = document.createDocumentFragment();
    for (let i = pending.length - 1; i >= 0; i--) rows.appendChild(eventRow(pending[i][0], pending[i][1]));
    pending = [];
    feed.prepend(rows);
    while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
    $('event-feed-empty').hidden = feed.children.length > 0;
  }

  function clearFeed() {
    pending = [];
    $('event-feed').replaceChildren();
    $('event-feed-empty').hidden = false;
    showSampleRate(1);
  }

  function showSampleRate(rate) {
    const badge = $('feed-sample-rate');
    const sampled = rate < 1;
    badge.dataset.sampleRate = String(rate);
    badge.dataset.sampled = String(sampled);
    badge.textContent = sampled ? 'sampled: 1 in ' + Math.round(1 / rate) : 'all events';
    badge.title = sampled
      ? 'More events match than the feed sends; each shown event stands for about ' + Math.round(1 / rate)
      : 'Every matching event is shown';
  }

  // ---------- filter ----------
  function currentFilter() {
    const videoIds = $('filter-video-ids')
      .value.split(/[\s,]+/)
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    const eventTypes = Array.from(document.querySelectorAll('input[name="event_types"]:checked')).map((el) => el.value);
    return { video_ids: videoIds, event_types: eventTypes };
  }

  function sendFilter() {
    const filter = currentFilter();
    if (filter.video_ids.length === 0 && filter.event_types.length === 0) {
      send({ type: 'unsubscribe' });
    } else {
      send({ type: 'subscribe', payload: filter });
    }
  }

  function showSubscribed(payload) {
    const parts = [];
    parts.push(payload.video_ids.length ? 'videos ' + payload.video_ids.join(', ') : 'every video');
    parts.push(payload.event_types.length ? 'types ' + payload.event_types.join(', ') : 'every type');
    $('filter-status').textContent = 'Showing ' + parts.join('; ') + '.';
    const error = $('filter-error');
    error.hidden = true;
    error.textContent = '';
    clearFeed();
  }

  function showError(message) {
    const error = $('filter-error');
    error.textContent = message;
    error.hidden = false;
  }

  // ---------- connection ----------
  let socket = null;
  let attempt = 0;
  let retryTimer = null;
  let lastMetricsAt = 0;
  let state = 'connecting';

  function setState(next, text) {
    state = next;
    const el = $('connection-state');
    el.dataset.state = next;
    $('connection-label').textContent = text;
  }

  function socketUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return scheme + '//' + location.host + '/ws?token=' + encodeURIComponent(token);
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function connect() {
    clearTimeout(retryTimer);
    if (token === null) return;
    setState(attempt === 0 ? 'connecting' : 'reconnecting', attempt === 0 ? 'Connecting…' : 'Reconnecting…');
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (error) {
      scheduleReconnect();
      return;
    }
    socket = ws;
    ws.addEventListener('open', () => {
      if (socket !== ws) return;
      setState('open', 'Live');
      sendFilter();
    });
    ws.addEventListener('message', (message) => {
      if (socket !== ws) return;
      let parsed;
      try {
        parsed = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      handle(parsed);
    });
    ws.addEventListener('close', () => {
      if (socket !== ws) return;
      socket = null;
      afterClose();
    });
  }

  // A closed socket (or a refused handshake, which browsers do not explain):
  // the hub may be away, or the token revoked. Asks the HTTP API which.
  async function afterClose() {
    const used = token;
    setState('reconnecting', 'Disconnected, checking…');
    const verdict = await checkToken(used);
    if (token !== used) return; // signed out or changed meanwhile
    if (verdict.refused) {
      signOut('The hub no longer accepts this token: ' + verdict.message + ' Enter another one.');
      return;
    }
    scheduleReconnect();
  }

  // Exponential backoff with jitter: the ceiling doubles per failed attempt up
  // to 30 s, and the delay is drawn from its upper half.
  function scheduleReconnect() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    attempt++;
    const el = $('connection-state');
    el.dataset.retryInMs = String(delay);
    el.dataset.attempt = String(attempt);
    setState('reconnecting', 'Disconnected, retrying in ' + Math.max(1, Math.round(delay / 1000)) + ' s');
    retryTimer = setTimeout(connect, delay);
  }

  function handle(message) {
    const payload = message.payload;
    switch (message.type) {
      case 'realtime_metrics':
        attempt = 0;
        lastMetricsAt = Date.now();
        if (state !== 'open') setState('open', 'Live');
        showMetrics(payload);
        pushPoint(payload);
        drawCharts();
        break;
      case 'metrics_history':
        resetSeries();
        if (Array.isArray(payload)) {
          if (payload.length > 1) {
            const step = (Date.parse(payload[1].as_of) - Date.parse(payload[0].as_of)) / 1000;
            if (step > 0) intervalSeconds = step;
          }
          payload.forEach(pushPoint);
        }
        drawCharts();
        break;
      case 'top_videos':
        showTopVideos(Array.isArray(payload) ? payload : []);
        break;
      case 'analytics_event':
        queueEvent(payload, typeof message.sample_rate === 'number' ? message.sample_rate : 1);
        break;
      case 'subscribed':
        showSubscribed(payload);
        break;
      case 'error':
        showError(payload && payload.message ? payload.message : 'the hub refused the request');
        break;
      default:
        break;
    }
  }

  function watchStaleness() {
    if (state === 'open' && lastMetricsAt > 0 && Date.now() - lastMetricsAt > STALE_AFTER_MS) {
      setState('stale', 'No data for ' + Math.round((Date.now() - lastMetricsAt) / 1000) + ' s');
    } else if (state === 'stale' && Date.now() - lastMetricsAt > STALE_AFTER_MS) {
      $('connection-label').textContent = 'No data for ' + Math.round((Date.now() - lastMetricsAt) / 1000) + ' s';
    }
  }

  // ---------- the token ----------
  let token = null;
  let checking = 0;

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (error) {
      return null;
    }
  }

  function storeToken(value) {
    try {
      if (value === null) sessionStorage.removeItem(TOKEN_KEY);
      else sessionStorage.setItem(TOKEN_KEY, value);
    } catch (error) {
      // Storage disabled: the token lasts as long as the page.
    }
  }

  // #token=<key> in the address: taken, and removed from the address bar (and
  // the history entry) so it is neither left on screen nor bookmarked.
  function tokenFromFragment() {
    const fragment = location.hash.replace(/^#/, '');
    if (!/(^|&)token=/.test(fragment)) return null;
    const params = new URLSearchParams(fragment);
    const value = (params.get('token') || '').trim();
    params.delete('token');
    const rest = params.toString();
    history.replaceState(history.state, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    return value;
  }

  // What GET /api/metrics/realtime says of `candidate`: {ok}, {refused,
  // message} (401/403: the token will not do), or {unavailable, message}
  // (the hub is away, busy or cannot check keys right now).
  async function checkToken(candidate) {
    // A header value must be visible ASCII; keys are.
    if (!/^[\x21-\x7e]+$/.test(candidate)) return { refused: true, message: 'this token is not valid.' };
    let response;
    try {
      response = await fetch('/api/metrics/realtime', {
        headers: { Authorization: 'Bearer ' + candidate },
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (error) {
      return { unavailable: true, message: 'the hub cannot be reached.' };
    }
    if (response.ok) return { ok: true };
    let code = '';
    try {
      code = (await response.json()).error || '';
    } catch (error) {
      code = '';
    }
    if (response.status === 401) return { refused: true, message: 'this token is not valid.' };
    if (response.status === 403 && code === 'insufficient_scope') {
      return { refused: true, message: 'this token lacks the read scope.' };
    }
    if (response.status === 403) return { refused: true, message: 'this token may not be used from this page.' };
    if (response.status === 429) {
      const wait = response.headers.get('Retry-After');
      return { unavailable: true, message: 'too many attempts; try again' + (wait ? ' in ' + wait + ' s.' : ' later.') };
    }
    return { unavailable: true, message: 'the hub could not check it (HTTP ' + response.status + ').' };
  }

  function showSignIn(message) {
    $('dashboard').hidden = true;
    $('sign-out').hidden = true;
    $('sign-in').hidden = false;
    const error = $('token-error');
    error.textContent = message || '';
    error.hidden = !message;
    setState('signed-out', 'Signed out');
    const input = $('token-input');
    input.setAttribute('aria-invalid', String(Boolean(message)));
    input.focus();
  }

  function showDashboard() {
    $('sign-in').hidden = true;
    $('token-error').hidden = true;
    $('token-input').value = '';
    $('dashboard').hidden = false;
    $('sign-out').hidden = false;
  }

  // Forgets the token, closes the socket and asks for another one.
  function signOut(message) {
    token = null;
    checking++;
    storeToken(null);
    clearTimeout(retryTimer);
    attempt = 0;
    lastMetricsAt = 0;
    const ws = socket;
    socket = null;
    if (ws) ws.close(1000, 'signed out');
    showSignIn(message);
  }

  // Checks `candidate`, then keeps it and connects. A token from this tab's
  // storage is kept when the hub cannot be reached (the socket retries with
  // its backoff); one typed in must be confirmed first.
  async function signIn(candidate, typed) {
    const round = ++checking;
    setState('connecting', 'Checking token…');
    $('token-submit').disabled = true;
    const verdict = await checkToken(candidate);
    $('token-submit').disabled = false;
    if (round !== checking) return;
    if (verdict.refused) {
      storeToken(null);
      showSignIn('Not signed in: ' + verdict.message);
      return;
    }
    if (verdict.unavailable && typed) {
      showSignIn('Could not sign in: ' + verdict.message);
      return;
    }
    const ws = socket;
    socket = null;
    if (ws) ws.close(1000, 'token changed');
    token = candidate;
    storeToken(candidate);
    showDashboard();
    attempt = 0;
    connect();
  }

  function takeTokenFromFragment() {
    const fromFragment = tokenFromFragment();
    if (fromFragment === null) return false;
    if (fromFragment) signIn(fromFragment, false);
    else showSignIn('The link carried an empty token. Enter a read token.');
    return true;
  }

  // ---------- start ----------
  function start() {
    makeChart($('chart-viewers'), 'viewers', 'viewers', format.count);
    makeChart($('chart-events'), 'events', 'events/s', format.perSecond);
    makeChart($('chart-errors'), 'errors', 'error rate %', format.percent);
    makeChart($('chart-bandwidth'), 'bandwidth', 'Gbps', format.gbps);
    if (typeof ResizeObserver === 'function') {
      const observer = new ResizeObserver(resizeCharts);
      charts.forEach(({ container }) => observer.observe(container));
    } else {
      window.addEventListener('resize', resizeCharts);
    }

    $('feed-filter').addEventListener('submit', (event) => {
      event.preventDefault();
      sendFilter();
    });
    $('filter-clear').addEventListener('click', () => {
      $('filter-video-ids').value = '';
      document.querySelectorAll('input[name="event_types"]').forEach((el) => {
        el.checked = false;
      });
      sendFilter();
    });
    $('feed-pause').addEventListener('click', () => {
      paused = !paused;
      const button = $('feed-pause');
      button.setAttribute('aria-pressed', String(paused));
      button.textContent = paused ? 'Resume feed' : 'Pause feed';
      missedWhilePaused = 0;
    });

    $('sign-in-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const candidate = $('token-input').value.trim();
      if (!candidate) {
        showSignIn('Enter a read token.');
        return;
      }
      signIn(candidate, true);
    });
    $('sign-out').addEventListener('click', () => signOut(''));
    window.addEventListener('hashchange', takeTokenFromFragment);

    setInterval(watchStaleness, 1000);
    if (takeTokenFromFragment()) return;
    const stored = storedToken();
    if (stored) signIn(stored, false);
    else showSignIn('');
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
