// Reload when the lessons change: the server sends the version it shows now, and again after
// every save; a page showing another version is out of date.
(function () {
  "use strict";
  var shown = document.documentElement.getAttribute("data-version");
  var live = document.querySelector("[data-live]");
  var source = new EventSource("/events");
  source.onmessage = function (event) {
    if (event.data !== shown) {
      window.location.reload();
    }
  };
  source.onopen = function () {
    if (live) { live.textContent = "live: saved edits show here"; live.classList.remove("off"); }
  };
  source.onerror = function () {
    if (live) { live.textContent = "not connected: is lessons serve running?"; live.classList.add("off"); }
  };
  // Fit each frame to its email, so the page scrolls as one; a frame may have loaded before
  // this script ran, so it is fitted now as well as on load.
  function fit(frame) {
    var doc = frame.contentDocument;
    if (doc && doc.readyState === "complete" && doc.URL !== "about:blank") {
      // Measured from nothing: a frame taller than its email would otherwise stay so.
      frame.style.height = "0";
      frame.style.height = doc.documentElement.scrollHeight + "px";
    }
  }
  var frames = document.querySelectorAll("iframe.email");
  frames.forEach(function (frame) {
    frame.addEventListener("load", function () { fit(frame); });
    fit(frame);
  });
  // A narrower or wider window wraps the email anew.
  window.addEventListener("resize", function () { frames.forEach(fit); });
})();
