/* The live floor board: keeps the server-rendered cards up to date over a WebSocket.
 *
 * The server sends {"type": "snapshot", "machines": [...]} on connect (and again
 * whenever it had to repair a lost update), then one {"type": "machine", ...}
 * frame per change, the latest per machine when the page falls behind, and, to lab managers,
 * {"type": "command", ...} frames with the outcome of remote commands.
 * A booking change arrives as the machine's whole card (bookings and interlock included).
 * The time left in the current booking and its overrun ("+12 min") are counted here from the
 * booking's end, every few seconds, without a message from the server.
 * Every text comes translated from the page (#board-strings); nothing is
 * written with innerHTML, so names and job names can never inject markup.
 */
(function () {
  "use strict";
  var list = document.getElementById("board");
  var stringsNode = document.getElementById("board-strings");
  if (!list || !stringsNode || !window.WebSocket) return;
  var T = JSON.parse(stringsNode.textContent);
  var B = T.booking || { kinds: {} };
  // A maker's frames carry an error's kind, not the bridge's message: its explanation comes from the page.
  var errorsNode = document.getElementById("board-error-strings");
  var ERRORS = errorsNode ? JSON.parse(errorsNode.textContent) : {};
  var liveState = document.getElementById("live-state");
  var manager = list.dataset.manager === "1";
  var only = list.dataset.only || null;
  var tz = list.dataset.timeZone || undefined;
  var lang = document.documentElement.lang || undefined;
  var machines = {};
  var answered = {};
  var CARD_READINGS = ["temp_nozzle_c", "temp_bed_c", "power_w", "spindle_rpm", "laser_power_pct", "feed_mm_min"];

  function fmt(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (_, key) { return values[key] == null ? "" : String(values[key]); })
      .replace(/%%/g, "%");
  }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function parseTime(iso) { var d = iso ? new Date(iso) : null; return d && !isNaN(d) ? d : null; }
  function timeOnly(d) {
    return new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: tz }).format(d);
  }
  function dayAndTime(d) {
    return new Intl.DateTimeFormat(lang, { weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: tz }).format(d);
  }
  function number(value) {
    var digits = Math.abs(value) >= 1000 ? 0 : 1;
    return new Intl.NumberFormat(lang, { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(value);
  }
  function readingValue(raw) {
    if (raw && typeof raw === "object") raw = raw.value != null ? raw.value : raw.v;
    return typeof raw === "number" && isFinite(raw) ? raw : null;
  }
  function field(card, name) { return card.querySelector('[data-field="' + name + '"]'); }
  function urlFor(template, slug) { return template.replace("MACHINE", encodeURIComponent(slug)); }

  function who(b) {
    if (b.holder) return b.holder;
    if (b.mine) return T.you;
    if (b.kind && b.kind !== "member") return b.title || B.kinds[b.kind] || b.kind;
    return T.booked;
  }

  function bookingText(b, withEnd) {
    var d = parseTime(withEnd ? b.end : b.start);
    var parts = [];
    if (withEnd) {
      parts.push(who(b));
      if (d) parts.push(fmt(T.until, { time: timeOnly(d) }));
      var stateText = bookingState(b);
      if (stateText) parts.push(stateText);
    } else {
      if (d) parts.push(dayAndTime(d));
      if (b.holder || b.mine || (b.kind && b.kind !== "member")) parts.push(who(b));
    }
    var text = parts.join(" · ");
    if (b.pending) text += " (" + T.pending + ")";
    return text;
  }

  function bookingState(b) {
    var at;
    if (b.status === "checked_in") {
      at = parseTime(b.checked_in_at);
      return at ? fmt(B.checked_in_at, { time: timeOnly(at) }) : "";
    }
    if (b.status === "no_show" || b.status === "released") {
      at = parseTime(b.released_at);
      return at ? fmt(b.status === "no_show" ? B.no_show : B.released, { time: timeOnly(at) }) : "";
    }
    if (b.status === "confirmed" && b.kind === "member") return b.unavailable ? B.unavailable : B.awaiting_check_in;
    return "";
  }

  // "42 min left" during the booking, "+12 min" once a checked-in booking runs past its end.
  function clockText(b, now) {
    if (!b || b.status === "no_show" || b.status === "released") return null;
    var end = parseTime(b.end), start = parseTime(b.start);
    if (!end || !start || now < start) return null;
    var minutes = Math.floor(Math.abs(end - now) / 60000);
    if (now < end) return { text: fmt(B.time_left, { minutes: minutes }), overrun: false };
    return b.status === "checked_in" ? { text: fmt(B.overrun, { minutes: Math.max(1, minutes) }), overrun: true } : null;
  }

  function tick() {
    var now = new Date();
    Array.prototype.forEach.call(list.querySelectorAll("[data-field=clock]"), function (node) {
      var card = node.closest(".board-card");
      var data = card && machines[card.dataset.machine];
      var shown = clockText(data && data.booking, now);
      node.textContent = shown ? shown.text : "";
      node.className = "clock" + (shown && shown.overrun ? " overrun" : "");
      node.title = shown && shown.overrun ? B.overrun_title : "";
    });
  }

  function interlockText(data) {
    if (!data.interlock) return null;
    var wanted = !!data.interlock.wanted;
    if (data.enabled == null || data.enabled === wanted) return wanted ? B.unlocked : B.locked;
    return wanted ? B.unlocking : B.locking;
  }

  function createCard(data) {
    var card = el("li", "card board-card");
    card.id = "machine-" + data.machine;
    card.dataset.machine = data.machine;
    var head = el("div", "card-head");
    var h = el("h2", "machine-name");
    var a = el("a", null, data.name || data.machine);
    a.href = urlFor(list.dataset.machineUrl, data.machine);
    h.appendChild(a);
    head.appendChild(h);
    var badge = el("span", "state-badge");
    badge.dataset.field = "state";
    head.appendChild(badge);
    card.appendChild(head);
    [["p", "since muted", "since"], ["ul", "alerts", "alerts"], ["div", "job", "job"],
     ["dl", "readings facts", "readings"], ["dl", "bookings facts", "bookings"]].forEach(function (spec) {
      var node = el(spec[0], spec[1]);
      node.dataset.field = spec[2];
      card.appendChild(node);
    });
    if (manager) {
      var template = list.querySelector("form.commands");
      if (template) {
        var form = template.cloneNode(true);
        // getAttribute/setAttribute: the buttons named "action" shadow form.action.
        form.setAttribute("action", urlFor(list.dataset.commandUrl, data.machine));
        form.dataset.machine = data.machine;
        card.appendChild(form);
        var status = el("p", "cmd-status");
        status.setAttribute("role", "status");
        status.setAttribute("aria-live", "polite");
        card.appendChild(status);
      }
    }
    var empty = list.querySelector(".empty");
    if (empty) empty.remove();
    list.appendChild(card);
    return card;
  }

  function paint(data) {
    var card = document.getElementById("machine-" + data.machine);
    if (!card) card = createCard(data);
    var state = data.state || "offline";
    card.className = card.className.replace(/\bstate-\S+/g, "").replace(/\bhas-alerts\b/g, "").trim() +
      " state-" + state + ((data.alerts && data.alerts.length) ? " has-alerts" : "");
    card.dataset.state = state;
    card.dataset.ts = data.ts || 0;

    field(card, "state").textContent = T.states[state] || state;

    var since = field(card, "since");
    clear(since);
    var sinceDate = parseTime(data.since);
    if (sinceDate) since.appendChild(document.createTextNode(fmt(T.since, { time: timeOnly(sinceDate) })));
    if (data.enabled === false) {
      since.appendChild(document.createTextNode(" · "));
      since.appendChild(el("strong", null, T.disabled));
    }

    var alerts = field(card, "alerts");
    clear(alerts);
    (data.alerts || []).forEach(function (alert) {
      alerts.appendChild(el("li", "badge alert alert-" + alert.kind, alert.label || T.alerts[alert.kind] || alert.kind));
    });
    if (data.error && data.error.code) {
      alerts.appendChild(el("li", "badge alert alert-error", data.error.message
        ? data.error.code + ": " + data.error.message
        : ERRORS[data.error.code] || ERRORS.error || data.error.code));
    }

    var job = field(card, "job");
    clear(job);
    if (data.job) {
      var p = el("p");
      p.appendChild(el("span", "muted", T.job));
      p.appendChild(document.createTextNode(" "));
      p.appendChild(data.job.name ? el("span", "job-name", data.job.name) : document.createTextNode(T.hidden_job));
      job.appendChild(p);
      var pct = data.job.progress_pct;
      if (typeof pct === "number") {
        var bar = el("progress");
        bar.max = 100;
        bar.value = pct;
        job.appendChild(bar);
        job.appendChild(document.createTextNode(" "));
        job.appendChild(el("span", "pct", fmt(T.progress, { pct: Math.round(pct) })));
      }
    }

    var readings = field(card, "readings");
    clear(readings);
    CARD_READINGS.forEach(function (name) {
      var value = readingValue((data.readings || {})[name]);
      if (value == null) return;
      readings.appendChild(el("dt", null, T.readings[name] || name));
      var dd = el("dd", null, (number(value) + " " + (T.units[name] || "")).trim());
      dd.dataset.reading = name;
      readings.appendChild(dd);
    });

    if ("booking" in data) {
      var bookings = field(card, "bookings");
      clear(bookings);
      bookings.appendChild(el("dt", null, T.now));
      var current = el("dd", null, data.booking ? bookingText(data.booking, true) : T.free);
      var clock = el("span", "clock");
      clock.dataset.field = "clock";
      current.appendChild(document.createTextNode(" "));
      current.appendChild(clock);
      bookings.appendChild(current);
      bookings.appendChild(el("dt", null, T.next));
      bookings.appendChild(el("dd", null, data.next_booking ? bookingText(data.next_booking, false) : T.none));
      var lock = interlockText(data);
      if (lock) {
        bookings.appendChild(el("dt", null, B.interlock));
        var dd = el("dd", "interlock", lock);
        dd.dataset.field = "interlock";
        bookings.appendChild(dd);
      }
    }

    var form = card.querySelector("form.commands");
    if (form) {
      if (Array.isArray(data.commands)) syncButtons(form, data.commands);
      var show = {
        pause: state === "running",
        resume: state === "paused",
        cancel: state === "running" || state === "paused",
        enable: data.enabled === false,
        disable: data.enabled !== false && state !== "offline"
      };
      Array.prototype.forEach.call(form.querySelectorAll("button[name=action]"), function (button) {
        button.hidden = !show[button.value];
      });
    }
    // The machine page's charts (charts.js) take their live points from the same frame as the card.
    list.dispatchEvent(new CustomEvent("board:painted", { detail: data }));
  }

  // A card offers only the commands its machine can carry out ("commands"), in the page's order of
  // the buttons (T.actions), as the server renders them.
  function syncButtons(form, commands) {
    var wanted = {};
    commands.forEach(function (action) { wanted[action] = true; });
    Array.prototype.forEach.call(form.querySelectorAll("button[name=action]"), function (button) {
      if (!wanted[button.value]) button.remove();
    });
    var order = Object.keys(T.actions).filter(function (action) { return wanted[action]; });
    var before = null;
    for (var i = order.length - 1; i >= 0; i--) {
      var action = order[i];
      var button = form.querySelector('button[name=action][value="' + action + '"]');
      if (!button) {
        var danger = T.confirm && T.confirm[action];
        button = el("button", "button small" + (danger ? " danger" : ""), T.actions[action] || action);
        button.type = "submit";
        button.name = "action";
        button.value = action;
        if (danger) button.dataset.confirm = action;
      }
      form.insertBefore(button, before);
      before = button;
    }
    form.hidden = order.length === 0;
  }

  // The server re-checks the viewer's rights; a snapshot with manager: false means they were taken away.
  function dropManagerTools() {
    manager = false;
    list.dataset.manager = "0";
    Array.prototype.forEach.call(document.querySelectorAll("form.commands, .cmd-status"), function (node) { node.remove(); });
    var audit = document.getElementById("command-audit");
    var section = audit && audit.closest("section");
    if (section) section.remove();
  }

  // A frame's version "v" is [status ts, readings ts]: an older picture of a machine never
  // replaces a newer one (the server sends the latest; this guards the order they arrive in).
  function older(v, than) {
    if (!v || !than) return false;
    for (var i = 0; i < Math.max(v.length, than.length); i++) {
      var a = v[i] || 0, b = than[i] || 0;
      if (a !== b) return a < b;
    }
    return false;
  }

  function apply(frame) {
    if (only && frame.machine !== only) return;
    var known = machines[frame.machine] || {};
    if (older(frame.v, known.v)) return;
    // A live frame carries the status; bookings and alerts stay from the snapshot unless it brings them.
    var merged = Object.assign({}, known, frame);
    machines[frame.machine] = merged;
    paint(merged);
    tick();
  }

  // Why a command failed, in the page's language; the bridge's own words follow as detail
  // (command frames reach lab managers only).
  function explainError(error) {
    if (!error) return "";
    var codes = T.ack_codes || {};
    var text = codes[error.code] || codes[""] || error.code;
    return error.message && error.message !== text ? text + " (" + error.message + ")" : text;
  }

  function commandStatus(frame) {
    var label = T.actions[frame.action] || frame.action;
    var message = explainError(frame.error);
    if (frame.result === "ok") return { text: fmt(T.done, { action: label }), cls: "ok" };
    if (frame.result === "failed") return { text: fmt(T.refused, { action: label, message: message }), cls: "failed" };
    if (frame.result === "no_answer") return { text: fmt(T.no_answer, { action: label }), cls: "failed" };
    return { text: fmt(T.sent, { action: label }), cls: "" };
  }

  function showCommand(frame) {
    var card = document.getElementById("machine-" + frame.machine);
    var status = card && card.querySelector(".cmd-status");
    var shown = commandStatus(frame);
    if (status) {
      status.textContent = shown.text;
      status.className = "cmd-status " + shown.cls;
      status.dataset.command = frame.id;
      status.dataset.result = frame.result;
    }
    var audit = document.getElementById("command-audit");
    if (audit && (!only || frame.machine === only)) {
      var body = audit.tBodies[0];
      var row = body.querySelector('tr[data-command="' + frame.id + '"]');
      var resultText = (T.results[frame.result] || frame.result) +
        (frame.error ? ": " + explainError(frame.error) : "");
      if (!row) {
        var empty = body.querySelector("tr.empty");
        if (empty) empty.remove();
        row = document.createElement("tr");
        row.dataset.command = frame.id;
        var at = parseTime(frame.at);
        [at ? dayAndTime(at) : "", frame.by || "", T.actions[frame.action] || frame.action, ""].forEach(function (text) {
          row.appendChild(el("td", null, text));
        });
        body.insertBefore(row, body.firstChild);
      }
      var cell = row.cells[3];
      cell.textContent = resultText;
      cell.className = "result result-" + frame.result;
    }
  }

  // Remote commands: post without leaving the page; the outcome arrives on the socket.
  list.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches("form.commands")) return;
    var button = event.submitter;
    if (!button || !button.value) return;
    event.preventDefault();
    var card = form.closest(".board-card");
    var name = card ? card.dataset.name || card.dataset.machine : "";
    if (button.dataset.confirm && !window.confirm(fmt(T.confirm[button.dataset.confirm], { machine: name }))) return;
    var label = T.actions[button.value] || button.value;
    var status = card && card.querySelector(".cmd-status");
    if (status) { status.textContent = fmt(T.sending, { action: label }); status.className = "cmd-status"; }
    var body = new FormData(form);
    body.set("action", button.value);
    fetch(form.getAttribute("action"), {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRFToken": body.get("csrfmiddlewaretoken") }
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        if (!response.ok) {
          var message = json.error ? json.error.message : String(response.status);
          if (status) { status.textContent = fmt(T.failed_to_send, { action: label, message: message }); status.className = "cmd-status failed"; }
          return;
        }
        // The ack may have overtaken the response: never overwrite a final answer with "sent".
        if (!answered[json.id]) showCommand(json);
      });
    }).catch(function (error) {
      if (status) { status.textContent = fmt(T.failed_to_send, { action: label, message: String(error) }); status.className = "cmd-status failed"; }
    });
  });

  var socket = null;
  var retry = 1000;
  function setLive(state, text) {
    if (!liveState) return;
    liveState.dataset.state = state;
    liveState.textContent = text;
  }
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + list.dataset.wsPath);
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === "snapshot") {
        if (frame.manager === false && manager) dropManagerTools();
        machines = {};
        frame.machines.forEach(function (m) { machines[m.machine] = m; if (!only || m.machine === only) paint(m); });
        tick();
        setLive("live", T.live);
        retry = 1000;
      } else if (frame.type === "machine") {
        apply(frame);
      } else if (frame.type === "command") {
        // Frames may cross: never let a late "sent" overwrite the machine's answer.
        if (frame.result === "sent" && answered[frame.id]) return;
        if (frame.result !== "sent") answered[frame.id] = true;
        showCommand(frame);
      }
    };
    socket.onclose = function (event) {
      if (event.code === 4401 || event.code === 4403 || event.code === 4404) {
        setLive("closed", T.closed);
        return;
      }
      setLive("lost", T.reconnecting);
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }
  // The time left and the overrun move on with the clock, here.
  setInterval(tick, 5000);
  // Bookings move on with the clock: ask for a fresh snapshot every minute.
  setInterval(function () {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "refresh" }));
  }, 60000);
  connect();
})();
