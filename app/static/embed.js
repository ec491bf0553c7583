// Draws every Plotly figure on the page from its JSON block; a click on a point that carries a
// ticket link (customdata[0]) opens the ticket in its own tool. No inline script: CSP allows
// only scripts from this server.
(function () {
  "use strict";

  function openTicket(event) {
    var point = event && event.points && event.points[0];
    var link = point && point.customdata && point.customdata[0];
    if (typeof link === "string" && /^https?:\/\//i.test(link)) {
      window.open(link, "_blank", "noopener,noreferrer");
    }
  }

  function draw(element) {
    var block = document.getElementById(element.getAttribute("data-figure"));
    if (!block) {
      return;
    }
    var figure = JSON.parse(block.textContent);
    var config = {
      responsive: true,
      displaylogo: false,
      modeBarButtonsToRemove: ["sendDataToCloud"],
    };
    Plotly.newPlot(element, figure.data || [], figure.layout || {}, config).then(function (gd) {
      gd.on("plotly_click", openTicket);
      element.setAttribute("data-drawn", "true");
    });
  }

  function drawAll() {
    var charts = document.querySelectorAll("[data-figure]");
    for (var i = 0; i < charts.length; i += 1) {
      draw(charts[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
