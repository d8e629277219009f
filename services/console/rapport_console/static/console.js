// Live update (server-sent events): when the server says this page's data changed, fetch the page
// again and swap in its live region. The event carries only the kind of change; the content comes
// through the same access check as any page. Without JavaScript the page is complete as served.
(function () {
  "use strict";
  var region = document.querySelector("[data-live]");
  if (!region || !window.EventSource || !window.fetch) { return; }
  var status = document.getElementById("live-status");
  var words = { score: "new score", alert: "alert changed", session: "calendar changed", course: "course changed",
                delivery: "notification recorded", outcome: "outcome evaluated", intake: "episode changed",
                reconnected: "reconnected" };
  var busy = false, again = false;

  function editing() {
    var a = document.activeElement;
    return a && region.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName) && a.value;
  }

  function refresh(kind) {
    if (busy) { again = true; return; }
    if (editing()) { again = true; return; }  // never throw away what is being typed
    busy = true;
    fetch(window.location.pathname + window.location.search, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-live]");
        if (!fresh) { return; }
        var focused = document.activeElement && region.contains(document.activeElement) ? document.activeElement.id : "";
        region.replaceWith(fresh);
        region = fresh;
        if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
        document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates") || "0") + 1));
        if (status) { status.textContent = "Updated: " + (words[kind] || "changed"); }
      })
      .catch(function () { /* the next change or reconnection tries again */ })
      .then(function () { busy = false; if (again) { again = false; window.setTimeout(function () { refresh(kind); }, 300); } });
  }

  var source = new EventSource(region.getAttribute("data-live"));
  source.addEventListener("change", function (e) { refresh(e.data); });
  // A stream ends every few seconds (so a server stops promptly); the browser reconnects with the
  // last event id, and the server sends what was missed (or "reconnected" when it cannot tell).
})();
