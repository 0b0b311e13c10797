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
  // The content is not swapped while a pointer is pressed: a running
  // task's page is refreshed as often as once a second, and a swap between
  // a button's press and its release would take the button away, losing
  // the click (Cancel, on the page of a task reporting progress). The
  // newest content waits for the release, and for the click it makes, or
  // 10 s at most (a press released outside the window is never seen).
  var pressed = false, pressedAt = 0, held = null;
  function show(html) {
    if (pressed && Date.now() - pressedAt < 10000) {
      if (held === null) setTimeout(function () { if (held !== null) { var h = held; held = null; show(h); } }, 10100);
      held = html;
      return;
    }
    document.getElementById("main").innerHTML = html;
  }
  function release() {
    pressed = false;
    setTimeout(function () {
      if (held !== null && !pressed) { var h = held; held = null; show(h); }
    }, 0);
  }
  document.addEventListener("pointerdown", function () { pressed = true; pressedAt = Date.now(); }, true);
  document.addEventListener("pointerup", release, true);
  document.addEventListener("pointercancel", release, true);
  // signIn leaves for the sign-in page when a request of this page was sent
  // there: the session is gone (omniq-ui restarted, which signs everyone
  // out, or the session expired). The page would otherwise stay as it was,
  // silently out of date. Signing in comes back here.
  function signIn(r) {
    if (r.redirected && new URL(r.url).pathname === "/login") {
      location.assign(r.url);
      return true;
    }
    return false;
  }
  function refresh() {
    if (busy) { again = true; return; }
    // Do not replace a form the user is filling in.
    var a = document.activeElement;
    if (a && a.form && a.tagName !== "BUTTON") return;
    busy = true;
    fetch(location.href, { headers: { "X-Partial": "1" }, credentials: "same-origin" })
      .then(function (r) { return signIn(r) || !r.ok ? null : r.text(); })
      .then(function (html) { if (html !== null) show(html); })
      .catch(function () {})
      .then(function () {
        busy = false;
        // For tests: how many refreshes have been fetched.
        document.body.dataset.fetched = String(Number(document.body.dataset.fetched || 0) + 1);
        if (again) { again = false; refresh(); }
      });
  }
  // since: the server's count of changes before it read the page, so that a
  // change between the render and the stream's connection is not missed.
  var url = "/events?since=" + encodeURIComponent(document.body.dataset.version || "0") +
    (watch === "*" ? "" : "&task=" + encodeURIComponent(watch)) +
    (document.body.dataset.tick ? "&tick=1" : "");
  // A page holds its stream only while it is shown. A browser opens at most
  // six HTTP/1.1 connections to one host, and each stream keeps one: with
  // six dashboard tabs open, a seventh would not load, nor would the open
  // ones fetch their updates. A page that is shown again reconnects and
  // fetches itself once.
  var es = null, lost = false, retry = null;
  function connect() {
    if (es || document.hidden) return;
    es = new EventSource(url);
    es.onopen = function () {
      if (live) live.classList.add("on");
      // Back after the stream was lost: what changed meanwhile (possibly on
      // another omniq-ui, whose count of changes is not this page's) shows.
      if (lost) { lost = false; refresh(); }
    };
    es.onerror = function () {
      if (live) live.classList.remove("on");
      lost = true;
      if (!es || es.readyState !== EventSource.CLOSED || retry !== null) return;
      // The browser gave up on the stream: omniq-ui answered it with
      // something other than events, which is what it does once this
      // page's session is gone. Go to sign in if so; otherwise try again
      // a little later, one stream at a time.
      es = null;
      retry = setTimeout(function () {
        fetch(location.href, { headers: { "X-Partial": "1" }, credentials: "same-origin" })
          .then(function (r) { return signIn(r); }, function () { return false; })
          .then(function (left) { retry = null; if (!left) connect(); });
      }, 3000);
    };
    es.addEventListener("change", refresh);
  }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { connect(); return; }
    if (es) { es.close(); es = null; lost = true; }
    if (live) live.classList.remove("on");
  });
  connect();
})();
