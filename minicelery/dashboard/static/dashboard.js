// The live part of each page (#live, its URL in data-live) is fetched again whenever the
// server-sent event stream announces a change; actions ask for confirmation, then show the
// workers' replies.
(function () {
  "use strict";
  var root = document.body.getAttribute("data-root") || "";
  var live = document.getElementById("live");
  var busy = false, again = false;

  function refresh() {
    if (!live) return;
    if (busy) { again = true; return; }
    busy = true;
    fetch(live.getAttribute("data-live") + window.location.search, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) {
          live.innerHTML = html;
          live.setAttribute("data-updated", String(Date.now()));
        }
      })
      .catch(function () {})
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }

  if (window.EventSource && live) {
    var source = new EventSource(root + "/stream");
    source.addEventListener("change", refresh);
    // Leaving the page must free the connection at once: a browser keeps only a few open
    // per server, and a page kept for "back" could otherwise hold one.
    window.addEventListener("pagehide", function () { source.close(); });
  }

  function flash(text, failed) {
    var box = document.getElementById("flash");
    box.textContent = text;
    box.className = failed ? "error" : "";
    box.style.display = "block";
  }

  // <button data-action="/api/..." data-confirm="..." data-ask="n:How many?">
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) return;
    event.preventDefault();
    var url = root + button.getAttribute("data-action");
    var ask = button.getAttribute("data-ask");
    var params = [];
    if (ask) {
      var parts = ask.split(";");
      for (var i = 0; i < parts.length; i++) {
        var pair = parts[i].split(":");
        var value = window.prompt(pair[1]);
        if (value === null) return;
        params.push(encodeURIComponent(pair[0]) + "=" + encodeURIComponent(value));
      }
    }
    if (!window.confirm(button.getAttribute("data-confirm") || "Are you sure?")) return;
    if (params.length) url += (url.indexOf("?") < 0 ? "?" : "&") + params.join("&");
    fetch(url, { method: "POST", credentials: "same-origin" })
      .then(function (r) {
        return r.text().then(function (body) {
          var text = body;
          try { var data = JSON.parse(body); text = data.message || body; } catch (e) {}
          flash(text, !r.ok);
        });
      })
      .catch(function (e) { flash(String(e), true); })
      .then(refresh);
  });
})();
