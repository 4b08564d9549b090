// The requests chart: one bar per bucket (minute, hour or day, chosen by the API from the
// range), stacked by status class so blocks (403) and limits (429) stand out.
"use strict";

import { CLASSES, CLASS_COLOURS } from "./dom.js";

const charts = new Map();
window.iptrackCharts = charts; // for the end-to-end tests and the curious

function label(start, bucket) {
  const date = new Date(start);
  if (bucket === "day") return date.toLocaleDateString([], { month: "short", day: "numeric" });
  if (bucket === "hour") {
    return date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/// Draws `buckets` (the API's Bucket objects) on the canvas `canvasId`. An API without
/// buckets (older than the contract) gives `requests_per_minute`, drawn as one series.
export function drawClassChart(canvasId, figures) {
  const bucket = figures.bucket || "minute";
  let labels;
  let datasets;
  if (Array.isArray(figures.buckets)) {
    labels = figures.buckets.map((b) => label(b.start, bucket));
    datasets = CLASSES.map((name) => ({
      label: name,
      data: figures.buckets.map((b) => Number((b.classes || {})[name]) || 0),
      backgroundColor: CLASS_COLOURS[name],
      stack: "requests",
    }));
  } else {
    const minutes = figures.requests_per_minute || [];
    labels = minutes.map((m) => label(m.minute, "minute"));
    datasets = [{ label: "requests", data: minutes.map((m) => m.requests), backgroundColor: CLASS_COLOURS["2xx"] }];
  }
  let chart = charts.get(canvasId);
  if (chart && chart.canvas !== document.getElementById(canvasId)) {
    chart.destroy();
    chart = undefined;
  }
  if (!chart) {
    chart = new Chart(document.getElementById(canvasId), {
      type: "bar",
      data: { labels, datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: { legend: { display: datasets.length > 1, position: "bottom" } },
        // Up to 1,500 buckets: bars touch (no gaps thinner than a pixel), and labels
        // stay flat, as many as fit.
        datasets: { bar: { barPercentage: 1, categoryPercentage: 0.9 } },
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 24 } },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
        },
      },
    });
    charts.set(canvasId, chart);
  } else {
    chart.data.labels = labels;
    // In place when the series are the same, so legend choices (a hidden class) stay.
    if (chart.data.datasets.length === datasets.length) {
      datasets.forEach((d, i) => { chart.data.datasets[i].data = d.data; });
    } else {
      chart.data.datasets = datasets;
    }
    chart.update();
  }
  chart.iptrackBucket = bucket;
  return bucket;
}

export function destroyCharts() {
  for (const chart of charts.values()) chart.destroy();
  charts.clear();
}
