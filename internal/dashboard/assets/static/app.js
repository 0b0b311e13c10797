// Live updates: the server sends a "change" event (at most one a second)
// when something the page shows changed; the page then fetches its own
// content once and swaps it in. No polling.
(function () {
  "use strict";
  if (!window.EventSource) return;
  var watch = document.body.dataset.watch;
  if (!watch) return;
  var live = document.getElementById("live");
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    // Do not replace a form the user is filling in.
    var a = document.activeElement;
    if (a && a.form && a.tagName !== "BUTTON") return;
    busy = true;
    fetch(location.href, { headers: { "X-Partial": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) document.getElementById("main").innerHTML = html; })
      .catch(function () {})
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  var url = "/events" + (watch === "*" ? "" : "?task=" + encodeURIComponent(watch));
  var es = new EventSource(url);
  // A change between the page's render and the stream's (re)connection
  // sent no event: refresh once on every connection.
  es.onopen = function () { if (live) live.classList.add("on"); refresh(); };
  es.onerror = function () { if (live) live.classList.remove("on"); };
  es.addEventListener("change", refresh);
})();
