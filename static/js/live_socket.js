// One live websocket helper for the dashboards: JSON messages to a callback, reconnecting after a drop.
(function () {
  "use strict";
  function connect(path, onMessage) {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + path);
    socket.addEventListener("message", (event) => {
      let message = null;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      onMessage(message);
    });
    // 4xxx closes are the server's answer (logged out, not your team): retrying would not change it.
    socket.addEventListener("close", (event) => {
      if (event.code < 4000) window.setTimeout(() => connect(path, onMessage), 3000);
    });
  }
  window.modeldeckConnect = connect;
})();
