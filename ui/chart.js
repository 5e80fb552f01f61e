// A line chart in plain SVG: a few series over a time window, gaps where a
// value is missing, horizontal reference lines and vertical event marks.
// Drawn at the element's own pixel size, so text is never stretched.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgElement(name, attributes = {}, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// A round upper bound for the axis: 1, 2 or 5 times a power of ten.
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((n) => n >= value);
}

function label(value) {
  return value >= 10 || Number.isInteger(value) ? String(Math.round(value)) : value.toPrecision(2);
}

// options: points [{t, key: number|null}], series [key], windowMs, floor
// (the smallest top of the axis), lines [{value, label, className}],
// events [{t, label}].
function drawLineChart(svg, options) {
  const { points, series, windowMs, floor = 1, lines = [], events = [] } = options;
  const width = Math.max(svg.clientWidth, 120);
  const height = Math.max(svg.clientHeight, 80);
  const pad = { left: 34, right: 6, top: 8, bottom: 18 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const end = points.length ? points[points.length - 1].t : Date.now();
  const start = end - windowMs;

  let top = floor;
  for (const p of points) {
    for (const key of series) if (typeof p[key] === "number") top = Math.max(top, p[key]);
  }
  for (const line of lines) top = Math.max(top, line.value);
  top = niceCeiling(top * 1.05);

  const x = (t) => pad.left + ((t - start) / windowMs) * plotW;
  const y = (v) => pad.top + (1 - v / top) * plotH;

  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const children = [];

  const grid = svgElement("g", { class: "grid" });
  for (const v of [0, top / 2, top]) {
    grid.append(svgElement("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }));
    grid.append(svgElement("text", { x: pad.left - 4, y: y(v) + 4, "text-anchor": "end" }, label(v)));
  }
  const minutes = windowMs / 60_000;
  for (const [i, text] of [[0, `-${minutes} min`], [0.5, `-${minutes / 2} min`], [1, "now"]]) {
    const anchor = ["start", "middle", "end"][i * 2];
    grid.append(svgElement("text", { x: pad.left + i * plotW, y: height - 4, "text-anchor": anchor }, text));
  }
  children.push(grid);

  for (const line of lines) {
    const g = svgElement("g", { class: line.className || "limit" });
    g.append(svgElement("line", { x1: pad.left, x2: width - pad.right, y1: y(line.value), y2: y(line.value) }));
    // At the left, where the window's oldest and usually quietest points are.
    g.append(svgElement("text", { x: pad.left + 3, y: y(line.value) - 3 }, line.label));
    children.push(g);
  }

  for (const event of events) {
    if (event.t < start || event.t > end) continue;
    const g = svgElement("g", { class: "restart" });
    g.append(svgElement("line", { x1: x(event.t), x2: x(event.t), y1: pad.top, y2: pad.top + plotH }));
    // The label on the side with room for it.
    const left = x(event.t) > pad.left + plotW / 2;
    const at = { x: x(event.t) + (left ? -3 : 3), y: pad.top + 10, "text-anchor": left ? "end" : "start" };
    g.append(svgElement("text", at, event.label));
    children.push(g);
  }

  for (const key of series) {
    let d = "";
    let drawn = 0;
    let max = 0;
    let pen = "M";
    for (const p of points) {
      const v = p[key];
      if (typeof v !== "number" || p.t < start) {
        pen = "M"; // a gap: the next value starts a new stroke
        continue;
      }
      d += `${pen}${x(p.t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = "L";
      drawn += 1;
      max = Math.max(max, v);
    }
    const path = svgElement("path", { class: key, d: d || "M0,0" });
    path.dataset.series = key;
    path.dataset.points = String(drawn);
    path.dataset.max = String(max);
    children.push(path);
  }
  svg.replaceChildren(...children);
  svg.dataset.points = String(points.length);
}
