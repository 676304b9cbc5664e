/* Live view (/uzivo): follows the server-sent events of /api/v1/portal/live and writes
   the new totals into the page. Same origin only (CSP default-src 'self'). */
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  if (!status || !window.EventSource) { return; }
  var lang = status.getAttribute("data-lang") === "en" ? "en" : "bs";
  var group = lang === "en" ? "," : ".";
  var decimal = lang === "en" ? "." : ",";

  function localize(plain, trim) {
    var negative = plain.charAt(0) === "-";
    var parts = (negative ? plain.slice(1) : plain).split(".");
    var whole = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, group);
    var frac = parts.length > 1 ? parts[1] : "";
    if (trim) { frac = frac.replace(/0+$/, ""); }
    return (negative ? "-" : "") + whole + (frac ? decimal + frac : "");
  }

  function setData(el, plain, text) {
    if (!el) { return; }
    el.setAttribute("value", plain);
    el.textContent = text;
  }

  function money(plain) { return localize(plain, false) + " KM"; }

  function apply(m) {
    setData(document.getElementById("live-total"), m.total, money(m.total));
    setData(document.getElementById("live-net"), m.net, money(m.net));
    setData(document.getElementById("live-vat"), m.vat, money(m.vat));
    var days = document.getElementById("live-days");
    if (days) { days.textContent = String(m.days_elapsed); }
    m.services.forEach(function (s) {
      var row = document.getElementById("live-" + s.service);
      if (!row) { return; }
      var qty = row.querySelector(".live-qty");
      if (qty) {
        setData(qty, s.quantity, localize(s.quantity, true) + " " + qty.getAttribute("data-unit"));
      }
      setData(row.querySelector(".live-energy"), s.energy, money(s.energy));
      setData(row.querySelector(".live-fees"), s.fees, money(s.fees));
    });
    status.setAttribute("data-updated", String(Date.now()));
  }

  var source = new EventSource(status.getAttribute("data-live-url"));
  source.addEventListener("totals", function (event) {
    try { apply(JSON.parse(event.data)); } catch (e) { /* a bad event changes nothing */ }
  });
  source.addEventListener("end", function (event) {
    var why = "";
    try { why = JSON.parse(event.data).reason; } catch (e) { why = ""; }
    if (why === "session") { source.close(); }
  });
})();
