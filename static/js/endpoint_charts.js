// Endpoint page charts, one colour per version on every chart (static/js/metrics.js).
// Live: up to the last 15 minutes per second, each point the 5 s before it (rates and quantiles over 5 s, so a
// steady load draws a steady line). What happened before the page opened comes from the minute history (each
// minute's requests spread evenly over the seconds the live stream did not see), what happens after from
// /ws/endpoints/{name}/, every web process's messages summed. The axis starts at the first traffic it has.
// Last hour, day, week: the history API's buckets, the axis from the first bucket with traffic.
(function () {
  "use strict";
  const root = document.getElementById("endpoint-charts");
  if (!root || !window.Chart || !window.WebSocket || !window.modeldeckMetrics) return;
  const M = window.modeldeckMetrics;
  const NAME = root.dataset.endpoint;
  const API = "/api/v1/endpoints/" + encodeURIComponent(NAME);
  const LIVE_SECONDS = 900;
  const SMOOTH_SECONDS = 5;
  const MIN_AXIS_SECONDS = 60; // sized to the data, but never narrower than a minute
  const SPANS = { "1h": 3600, "1d": 86400, "1w": 604800 };
  const ROLE_ORDER = { primary: 0, canary: 1, shadow: 2 };
  const status = root.querySelector("[data-chart-status]");
  const LIVE_STATUS = "Per second, each point over the 5 s before it; before this page opened, per minute.";

  let bounds = []; // latency bucket bounds in ms, from the live messages or the history API
  const live = new Map(); // "version role" -> {version, role, seconds: Map(second -> sums of every process)}
  let liveFrom = null; // the first second the stream reported: from then on it is the whole truth
  let latestSecond = 0;
  let minutes = new Map(); // "version role" -> {version, role, minutes: Map(minute start -> sums)}
  let mode = "live";
  let pageReleases = releasesFromTable();
  let markers = pageReleases;
  const hidden = new Set(); // series hidden from the legend, kept across redraws

  function chart(id, unit, max) {
    return new window.Chart(document.getElementById(id), {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        elements: { point: { radius: 0 }, line: { borderWidth: 1.5, tension: 0 } },
        scales: {
          x: { type: "linear", ticks: { maxTicksLimit: 7, callback: (value) => timeLabel(value) } },
          y: { beginAtZero: true, max: max, title: { display: true, text: unit } },
        },
        plugins: {
          // One entry per version (and the releases): the line styles are told in the caption.
          legend: {
            labels: {
              boxWidth: 12,
              generateLabels: (c) =>
                window.Chart.defaults.plugins.legend.labels
                  .generateLabels(c)
                  .filter((item) => c.data.datasets[item.datasetIndex].legendEntry)
                  .map((item) => Object.assign(item, { text: c.data.datasets[item.datasetIndex].seriesLabel })),
            },
            onClick: (event, item) => {
              const key = keyOfLegend(item); // a version's lines come and go together
              if (key === null) return;
              if (hidden.has(key)) hidden.delete(key);
              else hidden.add(key);
              redraw();
            },
          },
          tooltip: {
            callbacks: {
              title: (items) => (items.length ? timeLabel(items[0].parsed.x, true) : ""),
              label: (item) => (item.dataset.releaseMarkers ? item.raw.text : item.dataset.label + ": " + valueText(item)),
            },
          },
        },
      },
    });
  }

  const charts = {
    requests: chart("chart-requests", "requests / s"),
    latency: chart("chart-latency", "latency (ms)"),
    errors: chart("chart-errors", "% of requests"),
    disagreement: chart("chart-disagreement", "shadow disagreement (%)", 100),
  };
  window.modeldeckCharts = charts;
  let legendKeys = new Map(); // legend text -> series key, from the last draw

  function keyOfLegend(item) {
    return legendKeys.has(item.text) ? legendKeys.get(item.text) : null;
  }

  function valueText(item) {
    const y = item.parsed.y;
    if (y === null || y === undefined) return "none";
    const digits = Math.abs(y) >= 100 ? 0 : Math.abs(y) >= 10 ? 1 : Math.abs(y) >= 1 ? 2 : 3;
    return y.toFixed(digits) + (item.dataset.unit || "");
  }

  function timeLabel(ms, full) {
    const date = new Date(ms);
    if (full || mode === "1w") return date.toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit", second: full ? "2-digit" : undefined });
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: mode === "live" ? "2-digit" : undefined });
  }

  function releaseText(r) {
    let text = "release #" + r.number + " " + r.action + ": v" + r.primary;
    if (r.canary) text += " + canary v" + r.canary + " (" + r.canary_percent + "%)";
    if (r.shadow) text += " + shadow v" + r.shadow;
    return text;
  }

  function releasesFromTable() {
    return Array.from(document.querySelectorAll("[data-release-at]")).map((row) => ({
      x: Date.parse(row.dataset.releaseAt),
      text: row.dataset.releaseText,
    }));
  }

  function bySeries(a, b) {
    return a.version - b.version || (ROLE_ORDER[a.role] ?? 9) - (ROLE_ORDER[b.role] ?? 9);
  }

  // --- drawing: points are {t, count (per second), p50, p95, errors %, 4xx %, disagreement %} ------------------
  function dataset(s, what, value, style) {
    const color = M.versionColor(s.version);
    const label = "v" + s.version + " " + s.role;
    const key = s.version + " " + s.role;
    return Object.assign(
      {
        label: what ? label + " " + what : label,
        seriesLabel: label,
        seriesKey: key,
        legendEntry: !style || !style.secondary,
        hidden: hidden.has(key),
        data: s.points.map((p) => ({ x: p.t, y: value(p) })),
        borderColor: color,
        backgroundColor: color,
        spanGaps: false,
      },
      style || {},
    );
  }

  function markerDataset(from, to) {
    return {
      label: "releases",
      seriesLabel: "releases",
      legendEntry: true,
      type: "scatter",
      releaseMarkers: true,
      // On the time axis itself (y = 0), so they never stretch a chart's scale; one made this very second (newer
      // than the last whole second drawn) sits at the right edge.
      data: markers.filter((m) => m.x >= from).map((m) => ({ x: Math.min(m.x, to), y: 0, text: m.text })),
      pointStyle: "triangle",
      pointRadius: 7,
      pointHoverRadius: 9,
      backgroundColor: "#151a26",
      borderColor: "#151a26",
      clip: false,
    };
  }

  let lastDraw = null;

  function draw(all, from, to) {
    lastDraw = [all, from, to];
    all.sort(bySeries);
    legendKeys = new Map(all.map((s) => ["v" + s.version + " " + s.role, s.version + " " + s.role]));
    const dashed = { borderDash: [5, 3], borderWidth: 1, secondary: true };
    const sets = {
      requests: all.map((s) => dataset(s, "", (p) => p.rate, { unit: " /s" })),
      latency: all.flatMap((s) => [
        dataset(s, "p95", (p) => p.p95, { unit: " ms" }),
        dataset(s, "p50", (p) => p.p50, Object.assign({ unit: " ms" }, dashed)),
      ]),
      errors: all
        .filter((s) => s.role !== "shadow") // a shadow's answers reach no caller
        .flatMap((s) => [
          dataset(s, "5xx", (p) => p.errors, { unit: " %" }),
          dataset(s, "4xx", (p) => p.refused, Object.assign({ unit: " %" }, dashed)),
        ]),
      disagreement: all.filter((s) => s.role === "shadow").map((s) => dataset(s, "", (p) => p.disagreement, { unit: " %" })),
    };
    for (const [key, c] of Object.entries(charts)) {
      c.data.datasets = sets[key].concat([markerDataset(from, to)]);
      c.options.scales.x.min = from;
      c.options.scales.x.max = to;
      c.update("none");
    }
  }

  function redraw() {
    if (lastDraw) draw(...lastDraw);
  }

  // A point from summed counts over `seconds` seconds.
  function point(t, sums, seconds) {
    const n = sums.count;
    const some = n > 1e-9;
    return {
      t: t,
      rate: some ? n / seconds : 0,
      p50: some ? M.quantile(sums.latency_buckets, bounds, 0.5) : null,
      p95: some ? M.quantile(sums.latency_buckets, bounds, 0.95) : null,
      errors: some ? (100 * sums.errors) / n : null,
      refused: some ? (100 * sums.client_errors) / n : null,
      disagreement: some ? (100 * sums.disagreements) / n : null,
    };
  }

  // --- live: per-second messages, one per web process, after the minutes from before the page opened ------------
  function onMetrics(message) {
    if (message.bounds_ms) bounds = message.bounds_ms;
    if (liveFrom === null) liveFrom = message.second;
    for (const v of message.versions || []) {
      const key = v.version + " " + v.role;
      let s = live.get(key);
      if (!s) live.set(key, (s = { version: v.version, role: v.role, seconds: new Map() }));
      // Every web process sends its own message for the same second: counts and buckets add up.
      s.seconds.set(message.second, M.addInto(s.seconds.get(message.second) || M.empty(), v));
    }
    latestSecond = Math.max(latestSecond, message.second);
  }

  // The sums of one series' second: the stream's from `liveFrom` on; before, its minute's requests that the stream
  // did not see, spread evenly over the minute's seconds before `liveFrom`.
  function secondSums(key, second, spread) {
    if (liveFrom !== null && second >= liveFrom) {
      const s = live.get(key);
      return (s && s.seconds.get(second)) || null;
    }
    const start = second - (second % 60);
    const cacheKey = key + "@" + start;
    if (!spread.has(cacheKey)) spread.set(cacheKey, minuteRemainder(key, start));
    return spread.get(cacheKey);
  }

  function minuteRemainder(key, start) {
    const m = minutes.get(key);
    const row = m && m.minutes.get(start);
    if (!row) return null;
    const seen = M.empty();
    const s = live.get(key);
    const unseenUntil = liveFrom === null ? start + 60 : Math.min(start + 60, Math.max(start, liveFrom));
    if (s && liveFrom !== null) for (let t = unseenUntil; t < start + 60; t++) if (s.seconds.has(t)) M.addInto(seen, s.seconds.get(t));
    const rest = M.addInto(M.empty(), row);
    M.addInto(rest, seen, -1);
    const unseen = unseenUntil - start;
    if (unseen <= 0 || rest.count <= 1e-9) return null;
    return M.addInto(M.empty(), rest, 1 / unseen);
  }

  function renderLive() {
    // Seconds come from the server's clock; follow it if the browser's lags behind.
    const end = Math.max(Math.floor(Date.now() / 1000) - 1, latestSecond);
    const earliest = end - LIVE_SECONDS + 1;
    const keys = new Map();
    for (const [key, s] of live) {
      for (const second of s.seconds.keys()) if (second < earliest - SMOOTH_SECONDS) s.seconds.delete(second);
      if (!s.seconds.size) live.delete(key);
      else keys.set(key, s);
    }
    let first = null;
    for (const s of live.values()) for (const second of s.seconds.keys()) first = first === null ? second : Math.min(first, second);
    for (const [key, m] of minutes) {
      for (const start of m.minutes.keys()) {
        if (start + 60 <= earliest || (liveFrom !== null && start >= liveFrom)) continue;
        if (!keys.has(key)) keys.set(key, m);
        first = first === null ? start : Math.min(first, start);
      }
    }
    const from = first === null ? end - MIN_AXIS_SECONDS + 1 : Math.max(earliest, Math.min(first, end - MIN_AXIS_SECONDS + 1));
    const spread = new Map();
    const all = [];
    for (const [key, s] of keys) {
      const perSecond = new Map();
      for (let t = from - SMOOTH_SECONDS + 1; t <= end; t++) {
        const sums = secondSums(key, t, spread);
        if (sums) perSecond.set(t, sums);
      }
      if (!perSecond.size) continue;
      const points = [];
      for (let t = from; t <= end; t++) {
        const sums = M.empty(); // the 5 s up to t
        for (let u = t - SMOOTH_SECONDS + 1; u <= t; u++) if (perSecond.has(u)) M.addInto(sums, perSecond.get(u));
        points.push(point(t * 1000, sums, SMOOTH_SECONDS));
      }
      all.push({ version: s.version, role: s.role, points: points });
    }
    draw(all, from * 1000, end * 1000);
  }

  async function fetchHistory(range) {
    const response = await fetch(API + "/metrics?range=" + range, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }

  // The minutes before the page opened (and the one it opened in, once it is written), every minute.
  async function loadMinutes() {
    let body = null;
    try {
      body = await fetchHistory("1h");
    } catch (error) {
      return;
    }
    if (body.bounds_ms) bounds = body.bounds_ms;
    const fresh = new Map();
    for (const s of body.series) {
      fresh.set(s.version + " " + s.role, {
        version: s.version,
        role: s.role,
        minutes: new Map(s.points.map((p) => [Date.parse(p.t) / 1000, p])),
      });
    }
    minutes = fresh;
    if (mode === "live") renderLive();
  }

  // --- history: buckets from the API, the empty ones drawn as no traffic -------------------------------------
  async function loadHistory(range) {
    status.textContent = "Loading…";
    let body = null;
    try {
      body = await fetchHistory(range);
    } catch (error) {
      if (mode === range) status.textContent = "History is unavailable (" + error.message + ").";
      return;
    }
    if (mode !== range) return; // switched again while it loaded
    if (body.bounds_ms) bounds = body.bounds_ms;
    const bucket = body.bucket_seconds;
    const now = Math.floor(Date.now() / 1000);
    const end = now - (now % bucket);
    let from = end - SPANS[range] + bucket;
    let first = null;
    for (const s of body.series) for (const p of s.points) first = first === null ? Date.parse(p.t) / 1000 : Math.min(first, Date.parse(p.t) / 1000);
    if (first !== null) from = Math.max(from, Math.min(first, end - 10 * bucket));
    const all = body.series.map((s) => {
      const byTime = new Map(s.points.map((p) => [Date.parse(p.t) / 1000, p]));
      const points = [];
      for (let t = from; t <= end; t += bucket) points.push(point(t * 1000, byTime.get(t) || M.empty(), bucket));
      return { version: s.version, role: s.role, points: points };
    });
    markers = body.releases.map((r) => ({ x: Date.parse(r.at), text: releaseText(r) }));
    const width = bucket >= 3600 ? bucket / 3600 + " h" : bucket / 60 + " min";
    status.textContent = "Per " + width + (first === null ? "; no traffic in this range." : "; requests averaged per second.");
    draw(all, from * 1000, end * 1000);
  }

  function select(range) {
    mode = range;
    root.querySelectorAll("[data-range]").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.range === range));
      b.classList.toggle("primary", b.dataset.range === range);
    });
    if (range === "live") {
      markers = pageReleases;
      status.textContent = LIVE_STATUS;
      renderLive();
    } else {
      loadHistory(range);
    }
  }

  root.querySelectorAll("[data-range]").forEach((button) => button.addEventListener("click", () => select(button.dataset.range)));

  // --- sockets ------------------------------------------------------------------------------------------------
  const connect = window.modeldeckConnect; // static/js/live_socket.js

  // --- input drift: the newest window of each version, from the API, then from the live stream -----------------
  const driftRows = document.querySelector("[data-drift-rows]");
  const drift = new Map();

  function renderDrift() {
    if (!driftRows || !drift.size) return;
    driftRows.replaceChildren();
    for (const [version, d] of [...drift.entries()].sort((a, b) => a[0] - b[0])) {
      const features = Object.entries(d.psi).sort((a, b) => b[1] - a[1]);
      const largest = features.length ? features[0][1] : 0;
      const row = document.createElement("tr");
      row.dataset.version = String(version);
      const cells = [
        "v" + version,
        String(d.rows),
        largest.toFixed(3) + (largest > 0.25 ? " (significant)" : largest > 0.1 ? " (moderate)" : ""),
        features.slice(0, 5).map(([name, value]) => name + " " + value.toFixed(3)).join(", "),
        new Date(d.at).toLocaleTimeString(),
      ];
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text; // feature names come from model files: text, never markup
        row.append(cell);
      }
      driftRows.append(row);
    }
  }

  fetch("/api/v1/endpoints/" + encodeURIComponent(NAME) + "/drift", { credentials: "same-origin" })
    .then((response) => (response.ok ? response.json() : { versions: [] }))
    .then((body) => {
      for (const v of body.versions) if (!drift.has(v.version)) drift.set(v.version, { rows: v.rows, psi: v.psi, at: Date.parse(v.ended_at) });
      renderDrift();
    })
    .catch(() => {});

  function onMessage(message) {
    if (message.drift) {
      for (const v of message.drift) drift.set(v.version, { rows: v.rows, psi: v.psi, at: (message.second + 1) * 1000 });
      renderDrift();
    }
    if (message.versions && message.versions.length) onMetrics(message);
  }

  connect("/ws/endpoints/" + encodeURIComponent(NAME) + "/", onMessage);
  // A release made elsewhere (another browser, an automatic rollback) adds its marker without a reload.
  connect("/ws/teams/" + encodeURIComponent(root.dataset.team) + "/events/", async (message) => {
    if (message.kind !== "release" && message.kind !== "alert") return;
    if (message.data && message.data.endpoint && message.data.endpoint !== NAME) return;
    const response = await fetch("/api/v1/endpoints/" + encodeURIComponent(NAME) + "/releases", { credentials: "same-origin" });
    if (!response.ok) return;
    pageReleases = (await response.json()).map((r) => ({ x: Date.parse(r.created_at), text: releaseText(r) }));
    if (mode === "live") markers = pageReleases;
  });

  window.setInterval(() => mode === "live" && renderLive(), 1000);
  // Each finished minute is written within a second or two of its end: read them again a little after.
  window.setTimeout(function again() {
    loadMinutes();
    window.setTimeout(again, 60000);
  }, (63 - (Math.floor(Date.now() / 1000) % 60)) * 1000);
  select("live");
  loadMinutes();
})();
