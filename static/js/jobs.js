// Live job progress: the team's event stream (websocket) asks the job list to refresh at once; without a
// channel layer shared with the workers, the list's own polling (every 1.5 s while a job runs) carries on.
(function () {
  "use strict";
  const jobs = document.getElementById("jobs");
  if (!jobs || !window.WebSocket) return;
  const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + window.location.host + "/ws/teams/" + jobs.dataset.team + "/events/");
  socket.addEventListener("message", function (event) {
    let message = null;
    try { message = JSON.parse(event.data); } catch (e) { return; }
    if (message.kind === "job" && window.htmx) {
      window.htmx.trigger(document.getElementById("jobs"), "refresh");
    }
  });
})();
