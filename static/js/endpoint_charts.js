// Endpoint page charts: the last five minutes per second from /ws/endpoints/{name}/, or the last hour, day or week
// from /api/v1/endpoints/{name}/metrics; one dataset per version and role, release markers on the time axis.
(function () {
  "use strict";
  const root = document.getElementById("endpoint-charts");
  if (!root || !window.Chart || !window.WebSocket) return;
  const NAME = root.dataset.endpoint;
  const LIVE_SECONDS = 300;
  const SPANS = { "1h": 3600, "1d": 86400, "1w": 604800 };
  const ROLE_ORDER = { primary: 0, canary: 1, shadow: 2 };
  const COLORS = ["#2856d8", "#e07b00", "#8a3fd1", "#1f8a4c", "#c23030", "#0f8b9c", "#b5487a", "#6b7385"];
  const PERCENTILES = [["p50_ms", "p50", []], ["p95_ms", "p95", [6, 3]], ["p99_ms", "p99", [2, 3]]];
  const EMPTY = { count: 0, errors: 0, disagreements: 0, p50_ms: null, p95_ms: null, p99_ms: null };
  const status = root.querySelector("[data-chart-status]");

  const live = new Map(); // "version role" -> {version, role, seconds: Map(second -> summed point)}
  let latestSecond = 0;
  let mode = "live";
  let pageReleases = releasesFromTable();
  let markers = pageReleases;

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
          legend: { labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              title: (items) => (items.length ? timeLabel(items[0].parsed.x, true) : ""),
              label: (item) => (item.dataset.releaseMarkers ? item.raw.text : item.dataset.label + ": " + item.formattedValue),
            },
          },
        },
      },
    });
  }

  const charts = {
    requests: chart("chart-requests", "requests / s"),
    latency: chart("chart-latency", "latency (ms)"),
    errors: chart("chart-errors", "errors / s"),
    disagreement: chart("chart-disagreement", "shadow disagreement (%)", 100),
  };
  window.modeldeckCharts = charts;

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

  function series(version, role, points) {
    return { version: version, role: role, points: points };
  }

  function bySeries(a, b) {
    return a.version - b.version || (ROLE_ORDER[a.role] ?? 9) - (ROLE_ORDER[b.role] ?? 9);
  }

  // --- drawing --------------------------------------------------------------------------------------------------
  function dataset(s, suffix, value) {
    const color = COLORS[(s.version - 1) % COLORS.length];
    return {
      label: "v" + s.version + " " + s.role + suffix,
      data: s.points.map((p) => ({ x: p.t, y: value(p) })),
      borderColor: color,
      backgroundColor: color,
    };
  }

  function markerDataset(from, to) {
    return {
      label: "releases",
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

  function draw(all, from, to, perSeconds) {
    all.sort(bySeries);
    const sets = {
      requests: all.map((s) => dataset(s, "", (p) => p.count / perSeconds)),
      errors: all.map((s) => dataset(s, "", (p) => p.errors / perSeconds)),
      latency: all.flatMap((s) =>
        PERCENTILES.map(([field, name, dash]) => Object.assign(dataset(s, " " + name, (p) => p[field]), { borderDash: dash })),
      ),
      disagreement: all
        .filter((s) => s.role === "shadow")
        .map((s) => dataset(s, "", (p) => (p.count ? (100 * p.disagreements) / p.count : null))),
    };
    for (const [key, c] of Object.entries(charts)) {
      c.data.datasets = sets[key].concat([markerDataset(from, to)]);
      c.options.scales.x.min = from;
      c.options.scales.x.max = to;
      c.update("none");
    }
  }

  // --- live: per-second messages, one per web process ---------------------------------------------------------
  function larger(a, b) {
    if (a === null || a === undefined) return b ?? null;
    return b === null || b === undefined ? a : Math.max(a, b);
  }

  function onMetrics(message) {
    for (const v of message.versions || []) {
      const key = v.version + " " + v.role;
      let s = live.get(key);
      if (!s) live.set(key, (s = { version: v.version, role: v.role, seconds: new Map() }));
      const sum = s.seconds.get(message.second) || Object.assign({}, EMPTY);
      // Every web process sends its own message for the same second: counts add up.
      sum.count += v.count;
      sum.errors += v.errors;
      sum.disagreements += v.disagreements || 0;
      // Percentiles cannot be merged without the histograms; the largest of the processes' is an upper bound of the
      // merged one (no process has more than 5% of its requests above its own p95, so neither has their union).
      for (const [field] of PERCENTILES) sum[field] = larger(sum[field], v[field]);
      s.seconds.set(message.second, sum);
    }
    latestSecond = Math.max(latestSecond, message.second);
  }

  function renderLive() {
    // Seconds come from the server's clock; follow it if the browser's lags behind.
    const end = Math.max(Math.floor(Date.now() / 1000) - 1, latestSecond);
    const start = end - LIVE_SECONDS + 1;
    const all = [];
    for (const [key, s] of live) {
      for (const second of s.seconds.keys()) if (second < start) s.seconds.delete(second);
      if (!s.seconds.size) {
        live.delete(key);
        continue;
      }
      const points = [];
      for (let second = start; second <= end; second++) {
        points.push(Object.assign({ t: second * 1000 }, s.seconds.get(second) || EMPTY));
      }
      all.push(series(s.version, s.role, points));
    }
    draw(all, start * 1000, end * 1000, 1);
  }

  // --- history: buckets from the API, the empty ones filled with zero counts -----------------------------------
  async function loadHistory(range) {
    status.textContent = "Loading…";
    let body = null;
    try {
      const response = await fetch("/api/v1/endpoints/" + encodeURIComponent(NAME) + "/metrics?range=" + range, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error("HTTP " + response.status);
      body = await response.json();
    } catch (error) {
      if (mode === range) status.textContent = "History is unavailable (" + error.message + ").";
      return;
    }
    if (mode !== range) return; // switched again while it loaded
    const bucket = body.bucket_seconds;
    const now = Math.floor(Date.now() / 1000);
    const end = now - (now % bucket);
    const start = end - SPANS[range] + bucket;
    const all = body.series.map((s) => {
      const byTime = new Map(s.points.map((p) => [Date.parse(p.t) / 1000, p]));
      const points = [];
      for (let t = start; t <= end; t += bucket) points.push(Object.assign({}, byTime.get(t) || EMPTY, { t: t * 1000 }));
      return series(s.version, s.role, points);
    });
    markers = body.releases.map((r) => ({ x: Date.parse(r.at), text: releaseText(r) }));
    status.textContent = "Per " + (bucket >= 3600 ? bucket / 3600 + " h" : bucket / 60 + " min") + ", requests and errors averaged per second.";
    draw(all, start * 1000, end * 1000, bucket);
  }

  function select(range) {
    mode = range;
    root.querySelectorAll("[data-range]").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.range === range));
      b.classList.toggle("primary", b.dataset.range === range);
    });
    if (range === "live") {
      markers = pageReleases;
      status.textContent = "Per second, the last 5 minutes.";
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
  select("live");
})();
