// What the endpoint charts and the team dashboard share: latency quantiles estimated from summed buckets (as the
// server and Prometheus do), one colour per version, and the sums that merge web processes and seconds.
(function () {
  "use strict";
  // Distinct at a glance, and the same for a version on every chart, tile and page.
  const PALETTE = ["#2856d8", "#e07b00", "#1f8a4c", "#c23030", "#8a3fd1", "#0f8b9c", "#b5487a", "#7a6a00", "#4d5b7c", "#d14f9c"];

  // The latency under which a share q of the requests fell, in ms: within the bucket it falls in, the requests are
  // taken as spread evenly between its bounds (the first starts at 0). Null with no requests or past the last bound.
  function quantile(buckets, boundsMs, q) {
    let count = 0;
    for (const n of buckets) count += n;
    if (!count) return null;
    const target = q * count;
    let seen = 0;
    for (let i = 0; i < buckets.length; i++) {
      const n = buckets[i];
      if (n && seen + n >= target) {
        if (i >= boundsMs.length) return null;
        const lower = i ? boundsMs[i - 1] : 0;
        return lower + ((boundsMs[i] - lower) * (target - seen)) / n;
      }
      seen += n;
    }
    return null;
  }

  function versionColor(version) {
    return PALETTE[(Math.max(1, version) - 1) % PALETTE.length];
  }

  // Add `source` into `into` (counts and bucket arrays, scaled by `share` for a part of a longer span).
  function addInto(into, source, share) {
    const k = share === undefined ? 1 : share;
    into.count += source.count * k;
    into.errors += (source.errors || 0) * k;
    into.client_errors += (source.client_errors || 0) * k;
    into.disagreements += (source.disagreements || 0) * k;
    const buckets = source.latency_buckets || [];
    if (into.latency_buckets.length < buckets.length) {
      for (let i = into.latency_buckets.length; i < buckets.length; i++) into.latency_buckets.push(0);
    }
    for (let i = 0; i < buckets.length; i++) into.latency_buckets[i] += buckets[i] * k;
    return into;
  }

  function empty() {
    return { count: 0, errors: 0, client_errors: 0, disagreements: 0, latency_buckets: [] };
  }

  window.modeldeckMetrics = { quantile: quantile, versionColor: versionColor, addInto: addInto, empty: empty };
})();
