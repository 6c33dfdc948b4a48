// Regent's pages refresh their live part without a reload: the element
// marked data-live is fetched again every two seconds as a fragment of
// the same page and replaced when it changed.
(function () {
  "use strict";
  const every = 2000;

  function refresh(el) {
    if (document.hidden || el.contains(document.activeElement)) {
      return; // do not disturb a form being filled in
    }
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    fetch(url, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (resp) { return resp.ok ? resp.text() : null; })
      .then(function (html) {
        if (html !== null && html.trim() !== el.dataset.last) {
          el.innerHTML = html;
          el.dataset.last = html.trim();
        }
      })
      .catch(function () { /* the master may be restarting; try again later */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      el.dataset.last = el.innerHTML.trim();
      window.setInterval(function () { refresh(el); }, every);
    });
  });
})();
