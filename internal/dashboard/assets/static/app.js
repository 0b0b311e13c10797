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
  // since: the server's count of changes before it read the page, so that a
  // change between the render and the stream's connection is not missed.
  var url = "/events?since=" + encodeURIComponent(document.body.dataset.version || "0") +
    (watch === "*" ? "" : "&task=" + encodeURIComponent(watch));
  var es = new EventSource(url);
  es.onopen = function () { if (live) live.classList.add("on"); };
  es.onerror = function () { if (live) live.classList.remove("on"); };
  es.addEventListener("change", refresh);
})();
