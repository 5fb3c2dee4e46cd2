// A small SVG line-chart writer for the benchmark report: panels side by
// side, each with its own axes, a legend, and one line per series.

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const PANEL_WIDTH = 520;
const PANEL_HEIGHT = 360;
const MARGIN = { left: 70, right: 20, top: 40, bottom: 90 };

/**
 * @typedef {object} Series
 * @property {string} name
 * @property {Array<[number, number]>} points (x, y), x ascending
 * @property {boolean} [dashed] drawn dashed (a reference line)
 */

/**
 * @typedef {object} Panel
 * @property {string} title
 * @property {string} xLabel
 * @property {string} yLabel
 * @property {Series[]} series
 * @property {boolean} [logX] log2 scale on x, ticks at the data's x values
 * @property {(x: number) => string} [formatX]
 */

/** @param {string} text */
const escape = (text) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * Round tick values from 0 to at least `max`.
 * @param {number} max
 */
function ticksUpTo(max) {
  const rough = max / 5 || 1;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? rough;
  const ticks = [];
  for (let t = 0; t <= max + step * 0.999; t += step) ticks.push(t);
  return ticks;
}

/**
 * One panel as an SVG group at (x0, y0).
 * @param {Panel} panel
 * @param {number} x0
 * @param {number} y0
 */
function renderPanel(panel, x0, y0) {
  const width = PANEL_WIDTH - MARGIN.left - MARGIN.right;
  const height = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom;
  const points = panel.series.flatMap((s) => s.points);
  const xs = [...new Set(points.map(([x]) => x))].sort((a, b) => a - b);
  const fx = panel.logX ? Math.log2 : (/** @type {number} */ x) => x;
  const xMin = fx(xs[0] ?? 1);
  const xMax = fx(xs.at(-1) ?? 2);
  const yTicks = ticksUpTo(Math.max(1, ...points.map(([, y]) => y)));
  const yMax = /** @type {number} */ (yTicks.at(-1));
  const px = (/** @type {number} */ x) => x0 + MARGIN.left + (xMax === xMin ? width / 2 : ((fx(x) - xMin) / (xMax - xMin)) * width);
  const py = (/** @type {number} */ y) => y0 + MARGIN.top + height - (y / yMax) * height;
  const formatX = panel.formatX ?? String;
  const out = [];
  out.push(`<text x="${x0 + PANEL_WIDTH / 2}" y="${y0 + 22}" text-anchor="middle" font-size="15" font-weight="bold">${escape(panel.title)}</text>`);
  for (const t of yTicks) {
    out.push(`<line x1="${x0 + MARGIN.left}" x2="${x0 + MARGIN.left + width}" y1="${py(t)}" y2="${py(t)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x0 + MARGIN.left - 6}" y="${py(t) + 4}" text-anchor="end" font-size="11">${t}</text>`);
  }
  for (const x of xs) {
    out.push(`<line x1="${px(x)}" x2="${px(x)}" y1="${y0 + MARGIN.top + height}" y2="${y0 + MARGIN.top + height + 4}" stroke="#333"/>`);
    out.push(`<text x="${px(x)}" y="${y0 + MARGIN.top + height + 17}" text-anchor="middle" font-size="11">${escape(formatX(x))}</text>`);
  }
  out.push(
    `<rect x="${x0 + MARGIN.left}" y="${y0 + MARGIN.top}" width="${width}" height="${height}" fill="none" stroke="#333"/>`,
    `<text x="${x0 + MARGIN.left + width / 2}" y="${y0 + MARGIN.top + height + 36}" text-anchor="middle" font-size="12">${escape(panel.xLabel)}</text>`,
    `<text transform="translate(${x0 + 18} ${y0 + MARGIN.top + height / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escape(panel.yLabel)}</text>`,
  );
  panel.series.forEach((series, i) => {
    const color = COLORS[i % COLORS.length];
    const dash = series.dashed ? ' stroke-dasharray="6 4"' : '';
    const path = series.points.map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ');
    out.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`);
    for (const [x, y] of series.points) out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${color}"/>`);
    const legendX = x0 + MARGIN.left + (i % 2) * (width / 2);
    const legendY = y0 + MARGIN.top + height + 54 + Math.floor(i / 2) * 16;
    out.push(`<line x1="${legendX}" x2="${legendX + 18}" y1="${legendY - 4}" y2="${legendY - 4}" stroke="${color}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${legendX + 24}" y="${legendY}" font-size="11">${escape(series.name)}</text>`);
  });
  return out.join('\n');
}

/**
 * An SVG document with the panels side by side and a caption line.
 * @param {Panel[]} panels
 * @param {string} caption
 */
export function chartDocument(panels, caption) {
  const width = PANEL_WIDTH * panels.length;
  const height = PANEL_HEIGHT + 30;
  const body = panels.map((panel, i) => renderPanel(panel, i * PANEL_WIDTH, 0)).join('\n');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    body,
    `<text x="10" y="${height - 10}" font-size="11" fill="#555">${escape(caption)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}
