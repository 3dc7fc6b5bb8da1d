// Live updates for /calls: polls /calls/live.json and updates the table in place (rows are
// kept by call, so a focused "Hang up" link keeps its focus). Without JavaScript the page
// works the same, with its "Refresh" link. A static file: the pages' CSP allows no inline
// script.
(function () {
  "use strict";
  var root = document.getElementById("live-calls");
  if (!root || !window.fetch) {
    return;
  }
  var source = root.getAttribute("data-source");
  var interval = (parseInt(root.getAttribute("data-interval"), 10) || 2) * 1000;
  var table = document.getElementById("live-table");
  var body = table.tBodies[0];
  var status = document.getElementById("live-status");
  var failures = 0;
  var stopped = false;

  function text(tag, value, className) {
    var node = document.createElement(tag);
    node.textContent = value;
    if (className) {
      node.className = className;
    }
    return node;
  }

  function timeNode(iso, shown) {
    if (!iso) {
      return document.createTextNode("Not yet");
    }
    var node = text("time", shown);
    node.setAttribute("datetime", iso);
    return node;
  }

  function cell(label, child, className) {
    var td = document.createElement("td");
    if (label) {
      td.setAttribute("data-label", label);
    }
    if (className) {
      td.className = className;
    }
    td.appendChild(child);
    return td;
  }

  function hangupLink(call) {
    var link = text("a", "Hang up", "calls-button");
    link.href = call.hangup_url;
    link.appendChild(text("span", " the call to " + call.number, "calls-sr"));
    return link;
  }

  function fill(tr, call) {
    while (tr.firstChild) {
      tr.removeChild(tr.firstChild);
    }
    tr.appendChild(cell("Number", document.createTextNode(call.number), "calls-number"));
    tr.appendChild(cell("App", text("code", call.app)));
    tr.appendChild(cell("State", text("span", call.state_label, "calls-state calls-state-" + call.state)));
    tr.appendChild(cell("Started", timeNode(call.started_at, call.started)));
    tr.appendChild(cell("Answered", timeNode(call.answered_at, call.answered)));
    tr.appendChild(cell("", hangupLink(call)));
    tr.setAttribute("data-state", call.state);
    tr.setAttribute("data-answered", call.answered_at || "");
  }

  function sentence(count) {
    if (count === 0) {
      return "You have no live calls.";
    }
    return count === 1 ? "You have 1 live call." : "You have " + count + " live calls.";
  }

  function render(data) {
    var existing = {};
    Array.prototype.forEach.call(body.rows, function (tr) {
      existing[tr.getAttribute("data-token")] = tr;
    });
    data.calls.forEach(function (call, index) {
      var tr = existing[call.token_call];
      delete existing[call.token_call];
      if (!tr) {
        tr = document.createElement("tr");
        tr.setAttribute("data-token", call.token_call);
        fill(tr, call);
      } else if (
        tr.getAttribute("data-state") !== call.state ||
        tr.getAttribute("data-answered") !== (call.answered_at || "")
      ) {
        var focused = tr.contains(document.activeElement);
        fill(tr, call);
        if (focused) {
          tr.querySelector("a").focus();
        }
      }
      if (body.rows[index] !== tr) {
        body.insertBefore(tr, body.rows[index] || null);
      }
    });
    Object.keys(existing).forEach(function (token) {
      body.removeChild(existing[token]);
    });
    table.hidden = data.calls.length === 0;
    // Announced (role=status) only when the number of calls changes, not at every poll.
    var count = String(data.calls.length);
    if (status.getAttribute("data-count") !== count) {
      status.setAttribute("data-count", count);
      status.textContent = sentence(data.calls.length) + " Calls from every app you use show here.";
    }
  }

  function stop(message) {
    stopped = true;
    status.textContent = message;
  }

  function schedule() {
    if (stopped) {
      return;
    }
    // Slower while the tab is hidden, and after failures (up to a minute).
    var wait = interval * Math.min(30, Math.pow(2, failures)) * (document.hidden ? 5 : 1);
    window.setTimeout(poll, Math.min(wait, 60000));
  }

  function poll() {
    window
      .fetch(source, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      })
      .then(function (response) {
        if (response.status === 401) {
          stop("Your session has ended. Reload the page to sign in again.");
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        if (data) {
          failures = 0;
          render(data);
        }
        schedule();
      })
      .catch(function () {
        failures += 1;
        schedule();
      });
  }

  schedule();
})();
