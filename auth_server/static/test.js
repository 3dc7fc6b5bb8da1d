// Shows the redirect's query parameters and, for the implicit flow, the fragment ones.
(function () {
  var pre = document.getElementById("result");
  var data = JSON.parse(pre.getAttribute("data-query") || "{}");
  var hash = window.location.hash.replace(/^#/, "");
  new URLSearchParams(hash).forEach(function (value, key) {
    if (key === "expires_in") { value = parseInt(value, 10); }
    data[key] = value;
  });
  pre.textContent = JSON.stringify(data, null, 2);
  if (hash && window.history && window.history.replaceState) {
    // Keep the token out of the address bar and history once it is shown.
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }
})();
