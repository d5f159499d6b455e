// Team overview: one live tile per endpoint (requests/s, p95, 5xx and 4xx shares, each as a number and a one-minute
// sparkline), fed by that endpoint's /ws/endpoints/{name}/ socket. The tiles are an htmx fragment that refreshes on
// the team's release events (endpoints created, deleted, promoted): after each swap the tiles are matched to the
// streams by name, so an endpoint keeps its one socket and its last minute, a new one gets a socket, and the socket
// of one that is gone is closed.
(function () {
  "use strict";
  if (!window.Chart || !window.WebSocket || !window.modeldeckConnect) return;
  const SPARK_SECONDS = 60;
  const SMOOTH_SECONDS = 5; // each number, and each point of a line, covers this many seconds: a quiet one is no zero
  const COLORS = { requests: "#2856d8", p95: "#7a3db8", errors: "#c23030", clientErrors: "#c98a00" };
  const streams = new Map(); // endpoint name -> {socket, seconds, latest, boundsMs, view}
  const sparklines = {}; // endpoint name -> its requests sparkline (a Chart)
  window.modeldeckTiles = sparklines;
  window.modeldeckTileStreams = streams;

  // static/js/metrics.js: the endpoint charts' quantile and version colours, when the page has it.
  const metrics = () => (typeof window.modeldeckMetrics === "object" && window.modeldeckMetrics) || null;

  function clientErrors(entry) {
    if (typeof entry.client_errors === "number") return entry.client_errors;
    let count = 0; // a server that does not count them apart yet: its status codes do
    for (const [code, n] of Object.entries(entry.codes || {})) if (Number(code) >= 400 && Number(code) < 500) count += n;
    return count;
  }

  function addBuckets(into, buckets) {
    if (!into) return buckets.slice();
    for (let i = 0; i < buckets.length; i++) into[i] = (into[i] || 0) + buckets[i];
    return into;
  }

  // One message: one web process's second. Several processes report the same second: counts and buckets add up.
  function absorb(stream, message) {
    if (Array.isArray(message.bounds_ms)) stream.boundsMs = message.bounds_ms;
    const second = stream.seconds.get(message.second) || {
      count: 0, errors: 0, clientErrors: 0, buckets: null, bucketed: 0, p95: null,
    };
    for (const entry of message.versions || []) {
      // A shadow answers copies of requests already counted, and no client sees its answers.
      if (entry.role === "shadow") continue;
      second.count += entry.count;
      second.errors += entry.errors;
      second.clientErrors += clientErrors(entry);
      if (Array.isArray(entry.latency_buckets)) {
        second.buckets = addBuckets(second.buckets, entry.latency_buckets);
        second.bucketed += entry.count;
      }
      // Without buckets, the largest p95 of any version and process: an upper bound of the merged one.
      if (entry.p95_ms !== null && entry.p95_ms !== undefined) second.p95 = Math.max(second.p95 ?? 0, entry.p95_ms);
    }
    stream.seconds.set(message.second, second);
    stream.latest = Math.max(stream.latest, message.second);
  }

  // The SMOOTH_SECONDS seconds up to `end`, merged: requests/s, the 5xx and 4xx shares (%), p95 (ms).
  function windowUpTo(stream, end) {
    let count = 0;
    let errors = 0;
    let client = 0;
    let bucketed = 0;
    let buckets = null;
    let p95 = null;
    for (let second = end - SMOOTH_SECONDS + 1; second <= end; second++) {
      const s = stream.seconds.get(second);
      if (!s) continue;
      count += s.count;
      errors += s.errors;
      client += s.clientErrors;
      bucketed += s.bucketed;
      if (s.buckets) buckets = addBuckets(buckets, s.buckets);
      if (s.p95 !== null) p95 = Math.max(p95 ?? 0, s.p95);
    }
    const m = metrics();
    if (m && buckets && stream.boundsMs && bucketed === count) {
      // null with requests counted: the p95 lies past the last bound.
      p95 = m.quantile(buckets, stream.boundsMs, 0.95) ?? (count ? Infinity : null);
    }
    return {
      rps: count / SMOOTH_SECONDS,
      errors: count ? (100 * errors) / count : null,
      clientErrors: count ? (100 * client) / count : null,
      p95: count ? p95 : null,
    };
  }

  function sparkline(canvas, datasets) {
    return new window.Chart(canvas, {
      type: "line",
      data: {
        datasets: datasets.map((d) => ({
          label: d.label, data: [], borderColor: d.color, borderWidth: 1.5, pointRadius: 0, tension: 0, spanGaps: false,
        })),
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        events: [],
        plugins: { legend: { display: false }, tooltip: { enabled: false } },
        scales: { x: { type: "linear", display: false }, y: { display: false, beginAtZero: true } },
      },
    });
  }

  // A tile's charts on its (new) element; the stream's seconds outlive it.
  function view(element) {
    const canvas = (name) => element.querySelector("canvas[data-spark=" + name + "]");
    const charts = {
      requests: sparkline(canvas("requests"), [{ label: "requests/s", color: COLORS.requests }]),
      p95: sparkline(canvas("p95"), [{ label: "p95 ms", color: COLORS.p95 }]),
      errors: sparkline(canvas("errors"), [
        { label: "5xx %", color: COLORS.errors },
        { label: "4xx %", color: COLORS.clientErrors },
      ]),
    };
    const m = metrics();
    for (const swatch of element.querySelectorAll("[data-version-swatch]")) {
      if (!m) continue;
      swatch.style.backgroundColor = m.versionColor(Number(swatch.dataset.versionSwatch));
      swatch.classList.add("colored");
    }
    return {
      element,
      charts,
      field: (key) => element.querySelector("[data-field=" + key + "]"),
      destroy() {
        for (const chart of Object.values(charts)) chart.destroy();
      },
    };
  }

  const percent = (value) => (value === null ? "—" : value.toFixed(1) + " %");

  function milliseconds(value, boundsMs) {
    if (value === null || value === undefined) return "—";
    if (!Number.isFinite(value)) {
      const last = boundsMs && boundsMs.length ? boundsMs[boundsMs.length - 1] : null;
      return last === null ? "—" : "> " + (last >= 1000 ? last / 1000 + " s" : last + " ms");
    }
    return (value < 10 ? value.toFixed(2) : Math.round(value)) + " ms";
  }

  function render(stream) {
    const tile = stream.view;
    if (!tile) return;
    const end = Math.max(Math.floor(Date.now() / 1000) - 1, stream.latest);
    for (const second of stream.seconds.keys()) {
      if (second <= end - SPARK_SECONDS - SMOOTH_SECONDS) stream.seconds.delete(second);
    }
    const now = windowUpTo(stream, end);
    tile.field("rps").textContent = now.rps >= 10 ? Math.round(now.rps) : now.rps.toFixed(1);
    tile.field("p95").textContent = milliseconds(now.p95, stream.boundsMs);
    tile.field("errors").textContent = percent(now.errors);
    tile.field("client-errors").textContent = percent(now.clientErrors);
    const requests = [];
    const p95 = [];
    const errors = [];
    const client = [];
    for (let second = end - SPARK_SECONDS + 1; second <= end; second++) {
      const w = second === end ? now : windowUpTo(stream, second);
      requests.push({ x: second, y: w.rps });
      p95.push({ x: second, y: w.p95 !== null && Number.isFinite(w.p95) ? w.p95 : null });
      errors.push({ x: second, y: w.errors });
      client.push({ x: second, y: w.clientErrors });
    }
    tile.charts.requests.data.datasets[0].data = requests;
    tile.charts.p95.data.datasets[0].data = p95;
    tile.charts.errors.data.datasets[0].data = errors;
    tile.charts.errors.data.datasets[1].data = client;
    for (const chart of Object.values(tile.charts)) {
      // The exact minute: left to itself the axis would round out to "nice" ticks and squeeze the line.
      chart.options.scales.x.min = end - SPARK_SECONDS + 1;
      chart.options.scales.x.max = end;
      chart.update("none");
    }
  }

  // Match the tiles on the page to the streams: new tiles get a socket, swapped ones new charts, gone ones nothing.
  function follow() {
    const present = new Set();
    for (const element of document.querySelectorAll("[data-endpoint-tile]")) {
      const name = element.dataset.endpointTile;
      present.add(name);
      let stream = streams.get(name);
      if (!stream) {
        stream = { seconds: new Map(), latest: 0, boundsMs: null, view: null };
        const path = "/ws/endpoints/" + encodeURIComponent(name) + "/";
        stream.socket = window.modeldeckConnect(path, (message) => absorb(stream, message));
        streams.set(name, stream);
      }
      if (!stream.view || stream.view.element !== element) {
        if (stream.view) stream.view.destroy();
        stream.view = view(element);
        sparklines[name] = stream.view.charts.requests;
        render(stream);
      }
    }
    for (const [name, stream] of streams) {
      if (present.has(name)) continue;
      stream.socket.close();
      if (stream.view) stream.view.destroy();
      streams.delete(name);
      delete sparklines[name];
    }
  }

  follow();
  document.addEventListener("htmx:load", follow);
  document.addEventListener("htmx:afterSettle", follow);
  window.setInterval(() => streams.forEach(render), 1000);
})();
