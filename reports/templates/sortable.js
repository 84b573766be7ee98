/* Sorting of server-rendered tables (class "sortable"): click a header with data-col (or focus it and press
   Enter or Space); cells carry their sort key in data-v (numbers compared as numbers, empty keys last). */
(function () {
  "use strict";
  function key(cell) { return cell ? cell.getAttribute("data-v") || "" : ""; }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("th[data-col]");
    heads.forEach(function (th) {
      th.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); th.click(); }
      });
      th.addEventListener("click", function () {
        var col = +th.getAttribute("data-col"), asc = th.getAttribute("data-dir") !== "asc";
        heads.forEach(function (h) { h.removeAttribute("data-dir"); });
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("data-dir", asc ? "asc" : "desc");
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          if (x === "" || y === "") { return (x === "") - (y === ""); }
          var nx = Number(x), ny = Number(y);
          var d = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
          return asc ? d : -d;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
