// Team overview: one live tile per endpoint (req/s, error %, p95, a one-minute sparkline), each fed by that
// endpoint's /ws/endpoints/{name}/ socket.
(function () {
  "use strict";
  if (!window.Chart || !window.WebSocket) return;
  const SPARK_SECONDS = 60;
  const RECENT_SECONDS = 5; // the numbers cover this many seconds, so one quiet second does not read as zero
  const sparklines = {};
  window.modeldeckTiles = sparklines;

  const connect = window.modeldeckConnect; // static/js/live_socket.js

  function tile(element) {
    const name = element.dataset.endpointTile;
    const field = (key) => element.querySelector("[data-field=" + key + "]");
    const seconds = new Map(); // second -> {count, errors, p95}
    let latest = 0;
    const spark = new window.Chart(element.querySelector("canvas"), {
      type: "line",
      data: { datasets: [{ data: [], borderColor: "#2856d8", borderWidth: 1.5, pointRadius: 0, tension: 0 }] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        events: [],
        plugins: { legend: { display: false }, tooltip: { enabled: false } },
        scales: { x: { type: "linear", display: false }, y: { display: false, beginAtZero: true } },
      },
    });
    sparklines[name] = spark;

    connect("/ws/endpoints/" + encodeURIComponent(name) + "/", (message) => {
      const sum = seconds.get(message.second) || { count: 0, errors: 0, p95: null };
      for (const v of message.versions || []) {
        // A shadow answers copies of requests already counted, and no client sees its answers.
        if (v.role === "shadow") continue;
        sum.count += v.count; // several web processes report the same second: counts add up
        sum.errors += v.errors;
        // The largest p95 of any version and process: an upper bound of the merged one (the histograms stay server-side).
        if (v.p95_ms !== null && v.p95_ms !== undefined) sum.p95 = Math.max(sum.p95 ?? 0, v.p95_ms);
      }
      seconds.set(message.second, sum);
      latest = Math.max(latest, message.second);
    });

    return function render() {
      const end = Math.max(Math.floor(Date.now() / 1000) - 1, latest);
      for (const second of seconds.keys()) if (second <= end - SPARK_SECONDS) seconds.delete(second);
      let count = 0;
      let errors = 0;
      let p95 = null;
      for (let second = end - RECENT_SECONDS + 1; second <= end; second++) {
        const s = seconds.get(second);
        if (!s) continue;
        count += s.count;
        errors += s.errors;
        if (s.p95 !== null) p95 = Math.max(p95 ?? 0, s.p95);
      }
      const rps = count / RECENT_SECONDS;
      field("rps").textContent = rps >= 10 ? Math.round(rps) : rps.toFixed(1);
      field("errors").textContent = count ? ((100 * errors) / count).toFixed(1) + " %" : "—";
      field("p95").textContent = p95 === null ? "—" : (p95 < 10 ? p95.toFixed(2) : Math.round(p95)) + " ms";
      const points = [];
      for (let second = end - SPARK_SECONDS + 1; second <= end; second++) {
        points.push({ x: second, y: (seconds.get(second) || { count: 0 }).count });
      }
      spark.data.datasets[0].data = points;
      spark.update("none");
    };
  }

  const renders = Array.from(document.querySelectorAll("[data-endpoint-tile]")).map(tile);
  const renderAll = () => renders.forEach((render) => render());
  renderAll();
  window.setInterval(renderAll, 1000);
})();
