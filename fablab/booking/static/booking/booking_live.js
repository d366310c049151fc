/* A booking page's live machine: state, interlock and time left, from the lab's floor-board socket.
 *
 * The page (booking/booking_detail.html) renders everything about the booking itself; this script
 * only fills the "Your machine now" card. It opens the lab's board WebSocket (the same feed as the
 * floor board, which already filters what each viewer may see), takes this machine's card from the
 * snapshot and merges every {"type": "machine"} frame for it. When the machine's state or its
 * bookings change (a job started counts as a check-in; the kiosk checks in too), it asks the API
 * whether this booking changed and reloads the page if so; when the clock crosses the check-in
 * window it reloads too, so the server-rendered part (status, button) stays true.
 * Texts come translated from the page's JSON; nothing is written with innerHTML.
 */
(function () {
  "use strict";
  var configNode = document.getElementById("booking-live-config");
  var card = document.getElementById("booking-live");
  if (!configNode || !card) return;
  var C = JSON.parse(configNode.textContent);
  var T = C.strings;
  var start = new Date(C.start), end = new Date(C.end);
  var opens = new Date(C.opens), closes = new Date(C.closes);
  var machine = null;
  var shownAt = new Date();

  function fmt(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (_, key) { return values[key] == null ? "" : String(values[key]); });
  }
  function field(name) { return card.querySelector('[data-live="' + name + '"]'); }
  function setText(name, text) { var node = field(name); if (node) node.textContent = text; }

  function duration(ms) {
    var minutes = Math.max(0, Math.ceil(ms / 60000));
    if (minutes >= 60) return fmt(T.hours_minutes, { hours: Math.floor(minutes / 60), minutes: minutes % 60 });
    return fmt(T.minutes, { minutes: minutes });
  }

  function paintTime() {
    var now = new Date();
    if (now < start) setText("time", fmt(T.starts_in, { time: duration(start - now) }));
    else if (now < end) setText("time", fmt(T.left, { time: duration(end - now) }));
    else setText("time", T.ended);
  }

  function paintMachine() {
    if (!machine) return;
    var state = machine.online === false ? "offline" : machine.state;
    var stateNode = field("state");
    if (stateNode) {
      stateNode.textContent = T.states[state] || state || T.unknown;
      stateNode.dataset.state = state || "";
    }
    var locked = machine.enabled === false;
    setText("enabled", machine.enabled == null ? T.unknown : locked ? T.locked : T.enabled);
    card.dataset.state = state || "";
    card.dataset.enabled = machine.enabled == null ? "" : String(machine.enabled);
  }

  // Once a form on the page is sent (check in, cancel), its answer is the next page: reloading
  // meanwhile would race it (and eat the message it brings).
  var leaving = false;
  document.addEventListener("submit", function () { leaving = true; });
  function reload() { if (!leaving) { leaving = true; location.reload(); } }

  // The booking itself may have moved on (checked in by the machine, released, completed).
  var checking = false;
  function recheckBooking() {
    if (checking || leaving || !window.fetch) return;
    checking = true;
    fetch(C.status_url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (b) { if (b && b.status !== C.status) reload(); })
      .catch(function () {})
      .then(function () { checking = false; });
  }

  function crossed(moment, since, now) { return since < moment && moment <= now; }
  setInterval(function () {
    var now = new Date();
    paintTime();
    // The check-in button appears and goes with the clock: let the server say so.
    if (C.status === "confirmed" && (crossed(opens, shownAt, now) || crossed(closes, shownAt, now) || crossed(end, shownAt, now))) {
      shownAt = now;
      reload();
    }
  }, 15000);

  var socket = null, retry = 1000, seen = false;
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + C.ws_path);
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      var before = machine && machine.state;
      // A card (a snapshot after a reconnect, or a frame with "booking") follows a change of bookings.
      var bookings = false;
      if (frame.type === "snapshot") {
        bookings = seen;
        seen = true;
        machine = null;
        (frame.machines || []).forEach(function (m) { if (m.machine === C.machine) machine = m; });
        setText("note", T.live);
        retry = 1000;
      } else if (frame.type === "machine" && frame.machine === C.machine) {
        machine = Object.assign({}, machine || {}, frame);
        bookings = "booking" in frame;
      } else {
        return;
      }
      paintMachine();
      if (bookings || (before != null && machine && machine.state !== before)) recheckBooking();
    };
    socket.onclose = function (event) {
      if (event.code === 4401 || event.code === 4403 || event.code === 4404) {
        setText("note", T.closed);
        return;
      }
      setText("note", T.reconnecting);
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }
  // The board sends a fresh snapshot on request; every minute keeps a quiet machine current.
  setInterval(function () {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "refresh" }));
  }, 60000);
  paintTime();
  if (window.WebSocket) connect();
})();
