// flowrun view: a click on a round's bar opens its details below the timeline; the runs list's
// compare button wants exactly two runs. The pages work without this file, only less handily.
"use strict";
document.addEventListener("click", function (event) {
  var bar = event.target.closest("a.bar[data-round]");
  if (!bar) return;
  var details = document.getElementById(bar.dataset.round);
  if (!details) return;
  event.preventDefault();
  document.querySelectorAll("details.round[open]").forEach(function (d) { if (d !== details) d.open = false; });
  document.querySelectorAll("a.bar.selected").forEach(function (b) { b.classList.remove("selected"); });
  bar.classList.add("selected");
  details.open = true;
  details.scrollIntoView({block: "nearest"});
  history.replaceState(null, "", "#" + details.id);
});
document.addEventListener("DOMContentLoaded", function () {
  var compare = document.getElementById("compare");
  if (compare) {
    var button = document.getElementById("compare-button");
    var update = function () {
      var picked = compare.querySelectorAll("input[name=run]:checked").length;
      button.disabled = picked !== 2;
      button.textContent = picked === 2 ? "compare the two runs picked" : "pick two runs to compare (" + picked + " picked)";
    };
    compare.addEventListener("change", update);
    update();
  }
  if (location.hash) {
    var target = document.getElementById(location.hash.slice(1));
    if (target && target.tagName === "DETAILS") target.open = true;
  }
});
