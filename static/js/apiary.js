/* Apiary portal: the little the pages need beyond htmx.
 *
 * - The log viewer follows a running job like `tail -f`: after new text is appended it scrolls
 *   to the end, unless the reader has scrolled up to read something.
 * - A log opened from the graph or the table is scrolled to its end and gets the focus (its
 *   heading), so keyboard and screen-reader users land on what they asked for.
 */
(function () {
  "use strict";
  var NEAR_END = 48; // pixels

  function atEnd(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_END;
  }

  function toEnd() {
    var pre = document.getElementById("log-text");
    if (pre) pre.scrollTop = pre.scrollHeight;
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "log-text") target.dataset.follow = atEnd(target) ? "1" : "";
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (!target) return;
    if (target.id === "log-text" && target.dataset.follow) toEnd();
    if (target.id === "log-panel") {
      toEnd();
      var title = document.getElementById("log-title");
      if (title) title.focus({ preventScroll: true });
    }
  });

  // A link inside the SVG graph is loaded by htmx; keep the browser from also following it.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("svg a[hx-get]");
    if (link && window.htmx) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", toEnd);
})();
