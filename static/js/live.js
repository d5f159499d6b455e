// Live pages: an element with data-live="job version release ..." refreshes itself (the htmx "refresh" event, which
// its hx-trigger lists) when the team's event stream carries an event of one of those kinds; data-live-model and
// data-live-endpoint narrow it to one model's or one endpoint's events. Bursts are coalesced, and a refresh waits
// while focus is inside the element, so a form being filled in is never swapped away under the user.
(function () {
  "use strict";
  const team = document.body.dataset.team;
  if (!team || !window.WebSocket || !window.modeldeckConnect) return;
  if (!document.querySelector("[data-live]")) return;
  const pending = new Set();
  let timer = null;

  function matches(element, message) {
    if (!(element.dataset.live || "").split(/\s+/).includes(message.kind)) return false;
    const data = message.data || {};
    const model = element.dataset.liveModel;
    if (model && data.model !== undefined && data.model !== model) return false;
    const endpoint = element.dataset.liveEndpoint;
    if (endpoint && data.endpoint !== undefined && data.endpoint !== endpoint) return false;
    return true;
  }

  function flush() {
    timer = null;
    for (const id of Array.from(pending)) {
      const element = document.getElementById(id);
      if (!element) {
        pending.delete(id);
        continue;
      }
      if (element.contains(document.activeElement)) continue; // try again once the user has moved on
      pending.delete(id);
      if (window.htmx) window.htmx.trigger(element, "refresh");
    }
    if (pending.size) timer = window.setTimeout(flush, 1000);
  }

  window.modeldeckConnect("/ws/teams/" + encodeURIComponent(team) + "/events/", (message) => {
    for (const element of document.querySelectorAll("[data-live]")) {
      if (element.id && matches(element, message)) pending.add(element.id);
    }
    if (pending.size && timer === null) timer = window.setTimeout(flush, 150);
  });
})();
