// Countries: requests, refusals, addresses and flagged addresses per country as a table
// and a world map (chartjs-chart-geo over world-atlas, both served by iptrack); clicking
// a country opens the requests view filtered by it.
"use strict";

import { api, query } from "../api.js";
import { $, cell, el, fillTable } from "../dom.js";
import { rangeOf, rangePicker } from "../range.js";
import { go, href } from "../route.js";

let route = null;
let map = null;
/// {features, alpha2ByNumeric}, loaded once.
let atlas = null;

async function loadAtlas() {
  if (atlas) return atlas;
  const [topology, codes] = await Promise.all([
    fetch("/dashboard/vendor/countries-110m.json").then((r) => r.json()),
    fetch("/dashboard/vendor/iso-country-codes.json").then((r) => r.json()),
  ]);
  const alpha2ByNumeric = new Map(codes.map(([alpha2, , numeric]) => [numeric, alpha2]));
  const features = ChartGeo.topojson.feature(topology, topology.objects.countries).features
    .filter((f) => f.id !== "010"); // Antarctica: a third of the map, no traffic
  atlas = { features, alpha2ByNumeric };
  return atlas;
}

export function show(next, ctx) {
  route = next;
  const range = rangeOf(route.params, "24h");
  rangePicker($("countries-range"), range, (params) => go("countries", "", params));
  if (range.error) ctx.error(range.error);
}

function drawMap(rows, range) {
  const byCode = new Map(rows.map((c) => [c.country_code, c]));
  const { features, alpha2ByNumeric } = atlas;
  const codeOf = (feature) => alpha2ByNumeric.get(feature.id);
  const data = features.map((feature) => ({ feature, value: byCode.get(codeOf(feature))?.requests || 0 }));
  if (map && map.canvas !== $("countries-map")) {
    map.destroy();
    map = null;
  }
  if (map) {
    map.data.datasets[0].data = data;
    map.update();
    return;
  }
  map = new Chart($("countries-map"), {
    type: "choropleth",
    data: {
      labels: features.map((f) => f.properties.name),
      datasets: [{ label: "requests", outline: features, data, borderColor: "#c3cad6", borderWidth: 0.5 }],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      showOutline: false,
      // The country under the pointer, by its shape (not the nearest centre).
      interaction: { mode: "nearest", intersect: true },
      plugins: { legend: { display: false } },
      scales: {
        projection: { axis: "x", projection: "equalEarth" },
        color: {
          axis: "x",
          interpolate: (v) => (v === 0 ? "#eef1f5" : `rgba(59, 111, 216, ${0.25 + 0.75 * v})`),
          missing: "#eef1f5",
          legend: { position: "bottom-left", align: "right" },
        },
      },
      onClick: (_event, elements) => {
        if (!elements.length) return;
        const code = codeOf(features[elements[0].index]);
        if (code) go("requests", "", { country: code, since: map.iptrackRange.since, until: map.iptrackRange.until });
      },
    },
  });
  window.iptrackMap = map; // for the end-to-end tests
  map.iptrackCodeOf = codeOf;
  map.iptrackRange = range;
}

export async function refresh(ctx) {
  const range = rangeOf(route.params, "24h");
  const [figures] = await Promise.all([
    api("GET", "/countries" + query({ since: range.since, until: range.until })),
    loadAtlas(),
  ]);
  const rows = figures.countries || [];
  const link = { since: range.since, until: range.until };
  fillTable("countries-table", rows, (c) => [
    cell(el("a", { href: href("requests", "", { country: c.country_code, ...link }), className: "country" },
      c.country ? `${c.country} (${c.country_code})` : c.country_code)),
    cell(c.requests, "number"), cell(c.forbidden_403, "number"), cell(c.rate_limited_429, "number"),
    cell(c.addresses, "number"), cell(c.flagged_addresses, "number"),
  ], ctx.geolocation === "off"
    ? "Countries unavailable because geolocation is off."
    : "no located requests in this range");
  $("countries-unlocated").textContent = figures.unlocated_requests ?? "–";
  drawMap(rows, range);
  map.iptrackRange = range;
}

export function clear() {
  $("countries-table").querySelector("tbody").replaceChildren();
  $("countries-unlocated").textContent = "–";
  if (map) {
    map.destroy();
    map = null;
    window.iptrackMap = null;
  }
  route = null;
}

export function geoNotice(geolocation) {
  return geolocation === "off"
    ? "Countries unavailable because geolocation is off (IPTRACK_GEO_PROVIDER=none): new requests carry no country; only rows located earlier are counted."
    : "";
}
