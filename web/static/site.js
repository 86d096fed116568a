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
  // Pre-select the country of the chosen timezone (each option lists its zones), until the
  // reader picks a country themselves; a zone of an unlisted country means "Somewhere else".
  var country = document.querySelector("select[data-country-select]");
  if (zone && country && zone.dataset.browserTimezone === "") {
    var touched = false;
    var follow = function () {
      if (touched) { return; }
      var match = "other";
      country.querySelectorAll("option[data-zones]").forEach(function (option) {
        if (option.dataset.zones.split(" ").indexOf(zone.value) !== -1) { match = option.value; }
      });
      // UTC and Etc/… zones say nothing about a country: keep the server's choice.
      if (zone.value.indexOf("/") !== -1 && zone.value.indexOf("Etc/") !== 0) { country.value = match; }
    };
    country.addEventListener("change", function () { touched = true; });
    zone.addEventListener("change", follow);
    follow();
  }
})();
