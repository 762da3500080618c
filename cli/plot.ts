// The picture every split-inference paper opens with: bytes crossing each candidate cut (bars,
// log scale) and the device's cumulative share of the MACs (line), as a standalone SVG.

export interface CutPoint {
  index: number;
  bytes: number;
  devicePercent: number;
  dominated: boolean;
  label: string;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

export function cutPlotSvg(title: string, points: CutPoint[], inputBytes: number): string {
  const W = 900;
  const H = 420;
  const m = { left: 80, right: 70, top: 50, bottom: 60 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const maxB = Math.max(...points.map((p) => p.bytes), inputBytes, 1);
  const minB = Math.max(1, Math.min(...points.map((p) => p.bytes).filter((b) => b > 0), inputBytes) / 2);
  const lo = Math.floor(Math.log10(minB));
  const hi = Math.ceil(Math.log10(maxB));
  const y = (b: number) => m.top + ph - ((Math.log10(Math.max(b, 10 ** lo)) - lo) / (hi - lo || 1)) * ph;
  const yp = (pct: number) => m.top + ph - (pct / 100) * ph;
  const slot = pw / Math.max(points.length, 1);
  const x = (i: number) => m.left + slot * (i + 0.5);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${esc(title)}</text>`);
  for (let e = lo; e <= hi; e++) {
    const yy = y(10 ** e);
    out.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${yy}" y2="${yy}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 8}" y="${yy + 4}" text-anchor="end">${humanBytes(10 ** e)}</text>`);
  }
  for (const pct of [0, 25, 50, 75, 100]) out.push(`<text x="${W - m.right + 8}" y="${yp(pct) + 4}">${pct}%</text>`);
  points.forEach((p, i) => {
    const top = y(p.bytes);
    const fill = p.dominated ? "#c8c8c8" : "#3b7dd8";
    out.push(`<rect x="${x(i) - slot * 0.35}" y="${top}" width="${slot * 0.7}" height="${m.top + ph - top}" fill="${fill}"><title>${esc(`cut ${p.index}: ${p.label}\n${p.bytes} bytes, device ${p.devicePercent.toFixed(1)}% of MACs${p.dominated ? " (dominated)" : ""}`)}</title></rect>`);
  });
  const yi = y(inputBytes);
  out.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${yi}" y2="${yi}" stroke="#d62728" stroke-dasharray="6 4"/>`);
  out.push(`<text x="${m.left + 6}" y="${yi - 6}" fill="#d62728">input (cloud-only)</text>`);
  const line = points.map((p, i) => `${x(i).toFixed(1)},${yp(p.devicePercent).toFixed(1)}`).join(" ");
  out.push(`<polyline points="${line}" fill="none" stroke="#ff7f0e" stroke-width="2"/>`);
  const every = Math.ceil(points.length / 30);
  points.forEach((p, i) => {
    if (i % every === 0) out.push(`<text x="${x(i)}" y="${m.top + ph + 16}" text-anchor="middle">${p.index}</text>`);
  });
  out.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${m.top + ph}" y2="${m.top + ph}" stroke="#333"/>`);
  out.push(`<text x="${W / 2}" y="${H - 18}" text-anchor="middle">candidate cut (input → output)</text>`);
  out.push(`<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">bytes crossing (float32, log)</text>`);
  out.push(`<text transform="translate(${W - 14} ${m.top + ph / 2}) rotate(90)" text-anchor="middle" fill="#ff7f0e">device share of MACs</text>`);
  out.push(`<g transform="translate(${m.left + 10} ${m.top + 4})"><rect width="12" height="12" fill="#3b7dd8"/><text x="18" y="10">non-dominated cut</text><rect x="140" width="12" height="12" fill="#c8c8c8"/><text x="158" y="10">dominated</text></g>`);
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** Decimal labels for the power-of-ten grid lines: 10 B, 1 kB, 100 kB, 1 MB. */
function humanBytes(n: number): string {
  if (n >= 1e6) return `${+(n / 1e6).toPrecision(3)} MB`;
  if (n >= 1e3) return `${+(n / 1e3).toPrecision(3)} kB`;
  return `${+n.toPrecision(3)} B`;
}
