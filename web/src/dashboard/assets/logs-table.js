// One page of request logs (GET /api/v1/logs rows) as a table, shared by the requests
// view and the address page.
"use strict";

import { addressLink, cell, el, fillTable, shortTime, statusBadge } from "./dom.js";
import { href } from "./route.js";

/// Fills `table` with `items`; `filters` gives the links of the path and country cells.
export function fillLogs(table, items, empty) {
  fillTable(table, items, (r) => {
    const place = [r.country_code, r.city].filter(Boolean).join(" · ");
    return [
      cell(shortTime(r.timestamp), "time"),
      cell(addressLink(r.ip_address)),
      cell(r.method),
      cell(el("a", { href: href("requests", "", { path: r.path }), className: "path" }, r.path), "path"),
      cell(statusBadge(r.status)),
      cell(place || "–"),
      cell(r.user_agent || "–", "agent"),
    ];
  }, empty);
}
