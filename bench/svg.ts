// Small standalone SVG charts for the benchmarks' results (no dependency: a chart is a few dozen
// lines of text): lines over a log or linear axis, grouped bars on a log axis, and steps over time.

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const COLORS = ["#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8"];

interface Frame {
  w: number;
  h: number;
  m: { left: number; right: number; top: number; bottom: number };
  out: string[];
}

function frame(title: string, w = 900, h = 460): Frame {
  const m = { left: 80, right: 230, top: 50, bottom: 60 };
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${w}" height="${h}" fill="white"/>`,
    `<text x="${(w - m.right + m.left) / 2}" y="24" text-anchor="middle" font-size="15">${esc(title)}</text>`,
  ];
  return { w, h, m, out };
}

function logAxis(lo: number, hi: number, px0: number, px1: number): { at: (v: number) => number; ticks: number[] } {
  const a = Math.floor(Math.log10(Math.max(lo, 1e-12)));
  const b = Math.ceil(Math.log10(Math.max(hi, lo * 10)));
  const at = (v: number) => px0 + ((Math.log10(Math.max(v, 10 ** a)) - a) / (b - a || 1)) * (px1 - px0);
  const ticks: number[] = [];
  for (let e = a; e <= b; e++) ticks.push(10 ** e);
  return { at, ticks };
}

function legend(f: Frame, names: string[]): void {
  names.forEach((n, i) => {
    const y = f.m.top + 6 + i * 18;
    const x = f.w - f.m.right + 16;
    f.out.push(`<rect x="${x}" y="${y}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/><text x="${x + 18}" y="${y + 10}">${esc(n)}</text>`);
  });
}

const label = (v: number) => (v >= 1e6 ? `${+(v / 1e6).toPrecision(3)}M` : v >= 1e3 ? `${+(v / 1e3).toPrecision(3)}k` : `${+v.toPrecision(3)}`);

/** Lines: one per series over shared x values, both axes log. */
export function lineChart(title: string, xLabel: string, yLabel: string, xs: number[], series: { name: string; ys: (number | null)[] }[]): string {
  const f = frame(title);
  const { m, w, h } = f;
  const all = series.flatMap((s) => s.ys).filter((v): v is number => v !== null && v > 0);
  const X = logAxis(Math.min(...xs), Math.max(...xs), m.left, w - m.right);
  const Y = logAxis(Math.min(...all, 1), Math.max(...all, 1), h - m.bottom, m.top);
  for (const t of Y.ticks) f.out.push(`<line x1="${m.left}" x2="${w - m.right}" y1="${Y.at(t)}" y2="${Y.at(t)}" stroke="#e5e5e5"/><text x="${m.left - 8}" y="${Y.at(t) + 4}" text-anchor="end">${label(t)}</text>`);
  for (const x of xs) f.out.push(`<line x1="${X.at(x)}" x2="${X.at(x)}" y1="${m.top}" y2="${h - m.bottom}" stroke="#f0f0f0"/><text x="${X.at(x)}" y="${h - m.bottom + 16}" text-anchor="middle">${label(x)}</text>`);
  series.forEach((s, i) => {
    const pts = s.ys.map((y, k) => (y !== null && y > 0 ? `${X.at(xs[k]!).toFixed(1)},${Y.at(y).toFixed(1)}` : null)).filter(Boolean);
    const c = COLORS[i % COLORS.length];
    f.out.push(`<polyline points="${pts.join(" ")}" fill="none" stroke="${c}" stroke-width="2"/>`);
    s.ys.forEach((y, k) => {
      if (y !== null && y > 0) f.out.push(`<circle cx="${X.at(xs[k]!).toFixed(1)}" cy="${Y.at(y).toFixed(1)}" r="3" fill="${c}"><title>${esc(`${s.name}: ${y.toPrecision(4)} at ${xs[k]}`)}</title></circle>`);
    });
  });
  legend(f, series.map((s) => s.name));
  f.out.push(`<text x="${(m.left + w - m.right) / 2}" y="${h - 18}" text-anchor="middle">${esc(xLabel)}</text>`);
  f.out.push(`<text transform="translate(18 ${(m.top + h - m.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  f.out.push("</svg>");
  return f.out.join("\n") + "\n";
}

/** Bars grouped by category, one bar per series, log y. */
export function barChart(title: string, yLabel: string, categories: string[], series: { name: string; ys: (number | null)[] }[]): string {
  const f = frame(title);
  const { m, w, h } = f;
  const all = series.flatMap((s) => s.ys).filter((v): v is number => v !== null && v > 0);
  const Y = logAxis(Math.max(1, Math.min(...all, 1) / 2), Math.max(...all, 1), h - m.bottom, m.top);
  for (const t of Y.ticks) f.out.push(`<line x1="${m.left}" x2="${w - m.right}" y1="${Y.at(t)}" y2="${Y.at(t)}" stroke="#e5e5e5"/><text x="${m.left - 8}" y="${Y.at(t) + 4}" text-anchor="end">${label(t)}</text>`);
  const slot = (w - m.left - m.right) / Math.max(categories.length, 1);
  const bar = (slot * 0.8) / Math.max(series.length, 1);
  categories.forEach((c, k) => {
    f.out.push(`<text x="${m.left + slot * (k + 0.5)}" y="${h - m.bottom + 16}" text-anchor="middle">${esc(c)}</text>`);
    series.forEach((s, i) => {
      const y = s.ys[k];
      if (y === null || y === undefined || !(y > 0)) return;
      const x = m.left + slot * k + slot * 0.1 + bar * i;
      f.out.push(`<rect x="${x.toFixed(1)}" y="${Y.at(y).toFixed(1)}" width="${(bar * 0.9).toFixed(1)}" height="${(h - m.bottom - Y.at(y)).toFixed(1)}" fill="${COLORS[i % COLORS.length]}"><title>${esc(`${s.name}, ${c}: ${y.toPrecision(4)}`)}</title></rect>`);
    });
  });
  legend(f, series.map((s) => s.name));
  f.out.push(`<text transform="translate(18 ${(m.top + h - m.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  f.out.push("</svg>");
  return f.out.join("\n") + "\n";
}

/** A step line over time (the chosen cut, say), with shaded spans (the link's steps) behind it. */
export function stepChart(title: string, yLabel: string, points: { t: number; y: number; label: string }[], spans: { from: number; to: number; name: string }[], yMax: number): string {
  const f = frame(title, 900, 380);
  const { m, w, h } = f;
  const tMax = Math.max(...spans.map((s) => s.to), ...points.map((p) => p.t), 1);
  const x = (t: number) => m.left + (t / tMax) * (w - m.left - m.right);
  const y = (v: number) => h - m.bottom - (v / Math.max(yMax, 1)) * (h - m.top - m.bottom);
  spans.forEach((s, i) => {
    f.out.push(`<rect x="${x(s.from)}" y="${m.top}" width="${x(s.to) - x(s.from)}" height="${h - m.top - m.bottom}" fill="${i % 2 ? "#f4f4f4" : "#fafafa"}"/><text x="${(x(s.from) + x(s.to)) / 2}" y="${m.top + 14}" text-anchor="middle" fill="#666">${esc(s.name)}</text>`);
  });
  for (let v = 0; v <= yMax; v += Math.max(1, Math.ceil(yMax / 8))) f.out.push(`<text x="${m.left - 8}" y="${y(v) + 4}" text-anchor="end">${v}</text><line x1="${m.left}" x2="${w - m.right}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`);
  const path: string[] = [];
  points.forEach((p, i) => {
    path.push(`${x(p.t).toFixed(1)},${y(p.y).toFixed(1)}`);
    const next = points[i + 1];
    path.push(`${x(next ? next.t : tMax).toFixed(1)},${y(p.y).toFixed(1)}`);
  });
  f.out.push(`<polyline points="${path.join(" ")}" fill="none" stroke="${COLORS[0]}" stroke-width="2"/>`);
  let last = "";
  for (const p of points) {
    if (p.label === last) continue;
    last = p.label;
    f.out.push(`<circle cx="${x(p.t).toFixed(1)}" cy="${y(p.y).toFixed(1)}" r="3" fill="${COLORS[1]}"><title>${esc(`${p.t.toFixed(2)} s: ${p.label}`)}</title></circle>`);
  }
  for (let t = 0; t <= tMax; t += Math.max(1, Math.ceil(tMax / 10))) f.out.push(`<text x="${x(t)}" y="${h - m.bottom + 16}" text-anchor="middle">${t}</text>`);
  f.out.push(`<text x="${(m.left + w - m.right) / 2}" y="${h - 18}" text-anchor="middle">seconds</text>`);
  f.out.push(`<text transform="translate(18 ${(m.top + h - m.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  f.out.push("</svg>");
  return f.out.join("\n") + "\n";
}
