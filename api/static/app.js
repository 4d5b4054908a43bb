/* Prepaid OCS operator UI: live Supervision table over Server-Sent Events. No build step. */
(function () {
  "use strict";

  function moneyFormatter(table) {
    var price = table.dataset.unitPrice || "0.0001";
    var places = (price.split(".")[1] || "").length;
    var scale = Math.pow(10, places);
    var priceInt = Math.round(parseFloat(price) * scale);
    return function (units) {
      // units × price, shown with 2 decimals (live estimate; the server refresh is exact)
      var cents = Math.round((units * priceInt * 100) / scale);
      var sign = cents < 0 ? "-" : "";
      cents = Math.abs(cents);
      var whole = Math.floor(cents / 100);
      var frac = String(cents % 100).padStart(2, "0");
      return sign + whole + "," + frac;
    };
  }

  function tick(table, money) {
    var now = Date.now() / 1000;
    var rows = table.querySelectorAll("tbody tr[data-session]");
    rows.forEach(function (row) {
      var started = parseFloat(row.dataset.started);
      var rate = parseInt(row.dataset.rate, 10) || 0;
      var cost = parseInt(row.dataset.cost, 10) || 0;
      var balance = parseInt(row.dataset.balance, 10) || 0;
      var elapsed = Math.max(0, Math.floor(now - started));
      var consumption = Math.max(cost, elapsed * rate);
      var credit = balance - (consumption - cost);
      var set = function (name, value) {
        var cell = row.querySelector('[data-f="' + name + '"]');
        if (cell) { cell.textContent = value; }
      };
      set("duration", String(elapsed));
      set("consumption", String(consumption));
      set("consumption-money", money(consumption));
      set("credit", String(credit));
      set("credit-money", money(credit));
    });
    var count = document.getElementById("call-count");
    if (count) {
      count.textContent = rows.length === 1 ? "1 call in progress." : rows.length + " calls in progress.";
    }
  }

  function startLive(table) {
    var body = table.querySelector("tbody");
    var state = document.getElementById("live-state");
    var money = moneyFormatter(table);
    var source = new EventSource(table.dataset.stream);
    source.addEventListener("rows", function (event) {
      body.innerHTML = event.data;
      if (window.htmx) { window.htmx.process(body); }
      tick(table, money);
      if (state) { state.dataset.state = "live"; }
    });
    source.addEventListener("open", function () {
      if (state) { state.dataset.state = "live"; }
    });
    source.addEventListener("error", function () {
      if (state) { state.dataset.state = "reconnecting"; }
    });
    tick(table, money);
    window.setInterval(function () { tick(table, money); }, 1000);
    window.addEventListener("beforeunload", function () { source.close(); });
  }

  // <form data-confirm="Question?">: ask before submitting (the CSP forbids onsubmit=).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);

  document.addEventListener("DOMContentLoaded", function () {
    var table = document.getElementById("live-calls");
    if (table && window.EventSource) { startLive(table); }
  });
})();
