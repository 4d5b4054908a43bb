/* Prepaid OCS operator UI: live Supervision table over Server-Sent Events. No build step. */
(function () {
  "use strict";

  function moneyFormatter(table) {
    // The same display as the server's ocs.money.display: units x unit price, rounded half
    // up (away from zero) to the currency's minor unit, decimal comma.
    var price = table.dataset.unitPrice || "0.0001";
    var places = (price.split(".")[1] || "").length;
    var scale = Math.pow(10, places);
    var priceInt = Math.round(parseFloat(price) * scale);
    var minor = parseInt(table.dataset.minorUnits || "2", 10);
    var minorScale = Math.pow(10, minor);
    return function (units) {
      var scaled = Math.abs(units) * priceInt * minorScale;
      var minorUnits = Math.floor((scaled + scale / 2) / scale);
      var sign = units < 0 && minorUnits > 0 ? "-" : "";
      var whole = Math.floor(minorUnits / minorScale);
      if (minor === 0) { return sign + whole; }
      var frac = String(minorUnits % minorScale).padStart(minor, "0");
      return sign + whole + "," + frac;
    };
  }

  function tick(table, money) {
    var now = Date.now() / 1000;
    var rows = table.querySelectorAll("tbody tr[data-session]");
    var consumed = function (row) {
      var started = parseFloat(row.dataset.started);
      var rate = parseInt(row.dataset.rate, 10) || 0;
      var cost = parseInt(row.dataset.cost, 10) || 0;
      var elapsed = Math.max(0, Math.floor(now - started));
      return { elapsed: elapsed, units: Math.max(cost, elapsed * rate) };
    };
    // A call is charged to the balance only when it ends: every live call of an account
    // spends the same balance, so the credit left is the balance less all of them.
    var perAccount = {};
    rows.forEach(function (row) {
      var key = row.dataset.account;
      if (key) { perAccount[key] = (perAccount[key] || 0) + consumed(row).units; }
    });
    rows.forEach(function (row) {
      var balance = parseInt(row.dataset.balance, 10) || 0;
      var use = consumed(row);
      var elapsed = use.elapsed;
      var consumption = use.units;
      var credit = balance - (row.dataset.account ? perAccount[row.dataset.account] : consumption);
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

  document.addEventListener("DOMContentLoaded", function () {
    var table = document.getElementById("live-calls");
    if (table && window.EventSource) { startLive(table); }
  });
})();
