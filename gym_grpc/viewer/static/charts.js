"use strict";
// Small SVG charts: a histogram and a line over completion order (bucketed, so 100,000 points cost 200).
const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function compact(n) {
  return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? Math.round(n / 1e3) + "k" : n.toLocaleString("en-US");
}

function histogram(values, opts = {}) {
  const W = 560, H = 190, L = 44, B = 22, T = 10;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", "data-testid": "histogram" });
  if (!values.length) return svg;
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const distinct = new Set(values.length < 5000 ? values : values.slice(0, 5000));
  const bins = distinct.size <= 12 && distinct.size === new Set(values).size ? [...distinct].sort((a, b) => a - b) : null;
  let labels, counts;
  if (bins) {
    labels = bins.map((b) => fmt.r(b, 2));
    const index = new Map(bins.map((b, i) => [b, i]));
    counts = bins.map(() => 0);
    for (const v of values) counts[index.get(v)]++;
  } else {
    const n = opts.bins || 20;
    const width = (hi - lo) / n || 1;
    counts = new Array(n).fill(0);
    for (const v of values) counts[Math.min(n - 1, Math.floor((v - lo) / width))]++;
    labels = counts.map((_, i) => fmt.r(lo + i * width, 2));
  }
  const max = Math.max(...counts);
  const bw = (W - L - 6) / counts.length;
  for (let g = 0; g <= 4; g++) {
    const y = T + ((H - T - B) * g) / 4;
    svg.append(s("line", { x1: L, x2: W, y1: y, y2: y, class: "grid" }));
    svg.append(s("text", { x: L - 4, y: y + 3, "text-anchor": "end", class: "axis" }, compact(Math.round(max * (1 - g / 4)))));
  }
  counts.forEach((c, i) => {
    const h = ((H - T - B) * c) / (max || 1);
    const x = L + i * bw + 2;
    const bar = s("rect", { x, y: H - B - h, width: Math.max(1, bw - 4), height: h, class: "bar", rx: 2 });
    bar.append(s("title", {}, `${labels[i]}: ${c.toLocaleString("en-US")} rollouts`));
    svg.append(bar);
    if (counts.length <= 12 || i % Math.ceil(counts.length / 10) === 0)
      svg.append(s("text", { x: x + bw / 2 - 2, y: H - 6, "text-anchor": "middle", class: "axis" }, labels[i]));
  });
  return svg;
}

function overTime(st) {
  // Mean reward per bucket of rollouts in completion order, with the share of failures as bars under it.
  const W = 560, H = 190, L = 44, B = 22, T = 10;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", "data-testid": "over-time" });
  const n = st.n;
  if (!n) return svg;
  const buckets = Math.max(1, Math.min(100, Math.floor(n / 20)));
  const sum = new Float64Array(buckets), cnt = new Uint32Array(buckets), fail = new Uint32Array(buckets), all = new Uint32Array(buckets);
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const b = Math.floor((i * buckets) / n);
    all[b]++;
    if (st.c.failure[i] !== -1) { fail[b]++; continue; }
    const r = st.c.reward[i];
    if (r === null) continue;
    sum[b] += r; cnt[b]++;
    if (r < lo) lo = r; if (r > hi) hi = r;
  }
  if (lo === Infinity) { lo = 0; hi = 1; }
  if (hi === lo) { hi = lo + 1; }
  const x = (b) => L + ((W - L - 6) * (b + 0.5)) / buckets;
  const y = (r) => T + (H - T - B) * (1 - (r - lo) / (hi - lo));
  for (let g = 0; g <= 4; g++) {
    const r = lo + ((hi - lo) * g) / 4;
    svg.append(s("line", { x1: L, x2: W, y1: y(r), y2: y(r), class: "grid" }));
    svg.append(s("text", { x: L - 4, y: y(r) + 3, "text-anchor": "end", class: "axis" }, fmt.r(r, 2)));
  }
  const bw = (W - L - 6) / buckets;
  for (let b = 0; b < buckets; b++) {
    if (!fail[b]) continue;
    const h = ((H - T - B) * fail[b]) / all[b];
    svg.append(s("rect", { x: x(b) - bw / 2, y: H - B - h, width: Math.max(1, bw), height: h, class: "fail" }));
  }
  const pts = [];
  for (let b = 0; b < buckets; b++) if (cnt[b]) pts.push(`${x(b).toFixed(1)},${y(sum[b] / cnt[b]).toFixed(1)}`);
  svg.append(s("polyline", { points: pts.join(" "), class: "line" }));
  svg.append(s("text", { x: L, y: H - 6, class: "axis" }, "first"));
  svg.append(s("text", { x: W - 4, y: H - 6, "text-anchor": "end", class: "axis" }, `rollout ${n.toLocaleString("en-US")}`));
  return svg;
}
