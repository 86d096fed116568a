// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  // Quick exit: leave for a neutral site and replace this page in the history, so the
  // back button does not bring it back.
  function leave(url) { window.location.replace(url); }
  document.querySelectorAll("[data-quick-exit]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      leave(link.href);
    });
  });
  var exit = document.querySelector("[data-quick-exit]");
  if (exit) {
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { leave(exit.href); }
    });
  }
  // Pre-fill the timezone from the browser when the reader has not chosen one.
  var zone = document.querySelector("select[data-browser-timezone]");
  if (zone && zone.dataset.browserTimezone === "") {
    try {
      var name = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (name && zone.querySelector('option[value="' + name.replace(/"/g, "") + '"]')) { zone.value = name; }
    } catch (error) { /* keep the server's default */ }
  }
})();
