// One live websocket helper for the dashboards: JSON messages to a callback, reconnecting after a drop. It returns a
// handle whose close() ends the connection for good (a tile that left the page), with no reconnect after it.
(function () {
  "use strict";
  function connect(path, onMessage) {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    let socket = null;
    let retry = null;
    let closed = false;

    function open() {
      socket = new WebSocket(scheme + window.location.host + path);
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
        if (!closed && event.code < 4000) retry = window.setTimeout(open, 3000);
      });
    }

    open();
    return {
      close() {
        closed = true;
        window.clearTimeout(retry);
        socket.close();
      },
    };
  }
  window.modeldeckConnect = connect;
})();
