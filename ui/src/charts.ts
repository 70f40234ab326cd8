// Live graphs (uPlot): one per resource, the configured limit as a dashed line, breaches as
// labelled red markers. The legend is ours: live value, the window's peak and the limit in
// words, or the values under the pointer while hovering.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { HistoryPoint } from "./types";
import { breachOnGraph, formatValue, hoverText, legendText, LIMIT_NAME, type Series } from "./glance";

export type { Series };
export interface Breach { ts_ms: number; limit: string }

export interface Graph {
  el: HTMLElement;
  /** `span`: the time range shown, [from, to] in ms (the range the user picked, ending now). */
  set(points: HistoryPoint[], limit: number | null, breaches: Breach[], span?: [number, number]): void;
  resize(width: number): void;
  /** Draws what `set` held back while the graph was off screen. */
  flush(): void;
  /** The spans Fooocus slept (ms; `to` null: asleep now), shaded grey. */
  sleeps(spans: [number, number | null][]): void;
}

const COLORS: Record<Series, string> = { cpu: "#4c8dff", ram: "#32b37a", gpu: "#b46cff", vram: "#ff9f43" };
const HEIGHT = 170;
// Byte axes step by powers of two (1, 2, 4 GiB...), so ticks read "4 GiB", never "4.7 GiB".
const BYTE_STEPS = Array.from({ length: 31 }, (_, i) => 2 ** (i + 20));

export function graph(kind: Series, title: string, width = 520): Graph {
  const el = document.createElement("div");
  el.className = "graph";
  el.dataset.series = kind;
  const head = document.createElement("div");
  head.className = "graph-head";
  const titleEl = document.createElement("span");
  titleEl.className = "graph-title";
  titleEl.textContent = title;
  const legend = document.createElement("span");
  legend.className = "graph-legend";
  head.append(titleEl, legend);
  el.append(head);
  const isBytes = kind === "ram" || kind === "vram";
  let limit: number | null = null;
  let breaches: Breach[] = [];
  let asleep: [number, number | null][] = [];
  let points: HistoryPoint[] = [];
  let span: [number, number] | undefined;
  let hovering = false;
  const fmt = (v: number | null) => formatValue(kind, v);
  const showSummary = () => {
    const t = legendText(kind, points, limit);
    legend.replaceChildren();
    const now = document.createElement("b");
    now.textContent = t.now;
    legend.append(now, ...[t.peak, t.limit].filter(Boolean).map((s) => ` · ${s}`));
    legend.dataset.mode = "summary";
  };
  const opts: uPlot.Options = {
    width,
    height: HEIGHT,
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { show: false } },
    // The x axis spans the range the user picked even while the data covers less of it (a window
    // opened seconds ago read ":47.500 :48.000" across a "10 min" graph).
    scales: { x: { time: true, range: (_u, min, max) => (span ? [span[0] / 1000, span[1] / 1000] : [min, max]) }, y: { range: (_u, _min, max) => [0, Math.max(max, limit ?? 0, isBytes ? 1024 ** 3 : 100) * 1.08] } },
    axes: [
      { stroke: "#7a8394", grid: { stroke: "#8881", width: 1 }, ticks: { stroke: "#8883" } },
      { stroke: "#7a8394", grid: { stroke: "#8882", width: 1 }, ticks: { stroke: "#8883" }, values: (_u, vals) => vals.map((v) => fmt(v)), size: 70,
        ...(isBytes ? { incrs: BYTE_STEPS } : {}) },
    ],
    series: [
      {},
      { label: "peak", stroke: COLORS[kind], width: 1, dash: [2, 3], points: { show: false } },
      { label: "average", stroke: COLORS[kind], width: 2, fill: COLORS[kind] + "22", points: { show: false } },
      { label: "limit", stroke: "#e5484d", width: 1.5, dash: [8, 5], points: { show: false } },
    ],
    hooks: {
      setCursor: [
        (u) => {
          const i = u.cursor.idx;
          hovering = i != null;
          if (i == null) { showSummary(); return; }
          const ts = (u.data[0][i] ?? 0) * 1000;
          legend.textContent = hoverText(kind, ts, (u.data[2][i] as number | null) ?? null, (u.data[1][i] as number | null) ?? null, limit);
          legend.dataset.mode = "hover";
        },
      ],
      draw: [
        (u) => {
          // Breach markers: a red line with the limit's name at the top.
          const ctx = u.ctx;
          ctx.save();
          const panel = getComputedStyle(el).getPropertyValue("--panel").trim() || "#fff";
          ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
          ctx.textBaseline = "top";
          // Sleeping spans: Fooocus was stopped and held nothing; a grey band says why the
          // lines drop to zero.
          for (const [from, to] of asleep) {
            const left = Math.max(u.bbox.left, u.valToPos(from / 1000, "x", true));
            const right = Math.min(u.bbox.left + u.bbox.width, u.valToPos((to ?? Date.now()) / 1000, "x", true));
            if (right <= left) continue;
            ctx.fillStyle = "#8883";
            ctx.fillRect(left, u.bbox.top, right - left, u.bbox.height);
            ctx.fillStyle = "#7a8394";
            ctx.fillText("asleep", left + 4 * devicePixelRatio, u.bbox.top + 2 * devicePixelRatio);
          }
          for (const b of breaches) {
            const x = u.valToPos(b.ts_ms / 1000, "x", true);
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.fillStyle = "#e5484d";
            ctx.fillRect(x - devicePixelRatio, u.bbox.top, 2 * devicePixelRatio, u.bbox.height);
            const label = `${LIMIT_NAME[b.limit] ?? b.limit} limit`;
            const w = ctx.measureText(label).width;
            const tx = x + 4 * devicePixelRatio + w > u.bbox.left + u.bbox.width ? x - 4 * devicePixelRatio - w : x + 4 * devicePixelRatio;
            const ty = u.bbox.top + 16 * devicePixelRatio;
            ctx.fillStyle = panel; // a backing so the label stays readable over lines
            ctx.fillRect(tx - 2 * devicePixelRatio, ty - devicePixelRatio, w + 4 * devicePixelRatio, 14 * devicePixelRatio);
            ctx.fillStyle = "#e5484d";
            ctx.fillText(label, tx, ty);
          }
          ctx.restore();
        },
      ],
    },
  };
  const plot = new uPlot(opts, [[], [], [], []], el);
  // A graph nobody can see is not drawn: the GPU graphs on a machine without one, all of them
  // while another tab is shown. With the containment panel rebuilt only when it changes
  // (views/dashboard.ts), the mock build without a GPU in MiniBrowser held about 8 MiB less
  // after 2 minutes (web process 115 -> 107 MiB PSS); in the app the gain is within the
  // run-to-run spread of about 1 MiB (tests/app/footprint.sh --hold 260).
  let pending = false;
  const onScreen = () => el.isConnected && !el.classList.contains("hidden");
  const draw = () => {
    pending = false;
    const xs = points.map((p) => p.ts_ms / 1000);
    const avg = points.map((p) => p[kind]?.[1] ?? null);
    const max = points.map((p) => p[kind]?.[2] ?? null);
    plot.setData([xs, max, avg, points.map(() => limit)] as uPlot.AlignedData);
    if (!hovering) showSummary();
    el.dataset.draws = String(Number(el.dataset.draws ?? 0) + 1);
  };
  return {
    el,
    set(pts, lim, br, sp) {
      points = pts;
      span = sp;
      limit = lim;
      breaches = br.filter((b) => breachOnGraph(b.limit, kind));
      el.dataset.limit = lim == null ? "" : String(lim);
      el.dataset.breaches = String(breaches.length);
      el.dataset.breachLimits = [...new Set(breaches.map((b) => b.limit))].join(",");
      if (onScreen()) draw();
      else pending = true;
    },
    resize(w) {
      plot.setSize({ width: w, height: HEIGHT });
    },
    flush() {
      if (pending && onScreen()) draw();
    },
    sleeps(spans) {
      const key = JSON.stringify(spans);
      if (el.dataset.sleeps === key) return;
      el.dataset.sleeps = key;
      asleep = spans;
      if (onScreen()) plot.redraw(false);
      else pending = true;
    },
  };
}

/** A small three-line graph (RAM, VRAM, CPU) for the "why it stopped" card, each line scaled to
 *  its own limit (or peak) so all three fit one box; an SVG, built without innerHTML. */
export function sparkline(points: HistoryPoint[], limits: Partial<Record<Series, number | null>>, width = 320, height = 70): SVGSVGElement {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  if (points.length < 2) return svg;
  const t0 = points[0].ts_ms, t1 = points[points.length - 1].ts_ms;
  const limitLine = document.createElementNS(NS, "line");
  const pad = 4;
  const y = (f: number) => height - pad - Math.min(1.05, f) * (height - 2 * pad) / 1.05;
  limitLine.setAttribute("x1", "0"); limitLine.setAttribute("x2", String(width));
  limitLine.setAttribute("y1", String(y(1))); limitLine.setAttribute("y2", String(y(1)));
  limitLine.setAttribute("class", "limit-line");
  svg.append(limitLine);
  for (const kind of ["ram", "vram", "cpu"] as Series[]) {
    const vals = points.map((p) => p[kind]?.[2] ?? null);
    const peak = Math.max(0, ...vals.filter((v): v is number => v != null));
    const scale = limits[kind] ?? (peak || 1);
    const d = points.map((p, i) => {
      const v = vals[i];
      if (v == null) return "";
      const x = t1 === t0 ? 0 : ((p.ts_ms - t0) / (t1 - t0)) * width;
      return `${x.toFixed(1)},${y(v / scale).toFixed(1)}`;
    }).filter(Boolean).join(" ");
    if (!d) continue;
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", d);
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[kind]);
    line.setAttribute("stroke-width", "1.8");
    line.dataset.series = kind;
    svg.append(line);
  }
  return svg;
}
