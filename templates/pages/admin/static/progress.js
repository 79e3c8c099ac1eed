// Keeps digests' progress bars live: each bar not yet final asks its digest's progress
// (with the session cookie) every second while it moves, less often while it waits, and stops once the digest's state is final.
// On a digest's own page, a change of state reloads the page, so its buttons stay right.
(function () {
  "use strict";
  var RETRY_EVERY_MS = 5000;
  var reloadOnChange = document.querySelector("[data-reload-on-change]") !== null;

  function update(bar, data) {
    var p = data.progress;
    ["sent", "bounced", "failed", "skipped"].forEach(function (part) {
      var span = bar.querySelector(".progress ." + part);
      if (span) { span.style.width = p[part] + "%"; }
    });
    bar.querySelector(".progress").setAttribute("aria-valuenow", String(p.done));
    bar.querySelector(".progress-percent").textContent = p.percent;
    bar.querySelector(".progress-text").textContent = p.text;
    document.querySelectorAll('[data-state-of="' + data.id + '"]').forEach(function (badge) {
      badge.textContent = data.state;
      badge.className = "state state-" + data.state;
    });
    // The sentence beside the badge comes from the same state, so the two never disagree.
    document.querySelectorAll('[data-banner-of="' + data.id + '"]').forEach(function (line) {
      line.textContent = data.banner;
    });
  }

  function watch(bar) {
    var id = bar.getAttribute("data-digest");
    var shown = bar.getAttribute("data-state");
    function ask() {
      fetch("/admin/digests/" + encodeURIComponent(id) + "/progress", {
        credentials: "same-origin",
        headers: { "Accept": "application/json" },
        cache: "no-store"
      }).then(function (response) {
        if (response.status === 401 || response.status === 404) { return null; }  // signed out, or gone
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      }).then(function (data) {
        if (data === null) { return; }
        update(bar, data);
        if (reloadOnChange && data.state !== shown) { window.location.reload(); return; }
        if (data.final) { bar.removeAttribute("data-live"); return; }
        setTimeout(ask, data.poll_ms);
      }).catch(function () {
        setTimeout(ask, RETRY_EVERY_MS);
      });
    }
    setTimeout(ask, Number(bar.getAttribute("data-poll-ms")) || RETRY_EVERY_MS);
  }

  document.querySelectorAll(".digest-progress[data-live]").forEach(watch);
}());
