// Live graphs (uPlot): one per resource, the configured limit as a dashed line, breaches as
// red markers on the time axis.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { HistoryPoint } from "./types";
import { formatSize } from "./units";

export type Series = "cpu" | "ram" | "gpu" | "vram";

export interface Graph {
  el: HTMLElement;
  set(points: HistoryPoint[], limit: number | null, breaches: number[]): void;
  resize(width: number): void;
}

const COLORS: Record<Series, string> = { cpu: "#4c8dff", ram: "#32b37a", gpu: "#b46cff", vram: "#ff9f43" };

export function graph(kind: Series, title: string, width = 520): Graph {
  const el = document.createElement("div");
  el.className = "graph";
  el.dataset.series = kind;
  const isBytes = kind === "ram" || kind === "vram";
  let limit: number | null = null;
  let breaches: number[] = [];
  const fmt = (v: number | null) => (v == null ? "—" : isBytes ? formatSize(v) : `${v.toFixed(0)} %`);
  const opts: uPlot.Options = {
    title,
    width,
    height: 170,
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(max, limit ?? 0, isBytes ? 1 : 100) * 1.08] } },
    axes: [
      { stroke: "#7a8394", grid: { stroke: "#8881", width: 1 }, ticks: { stroke: "#8883" } },
      { stroke: "#7a8394", grid: { stroke: "#8882", width: 1 }, ticks: { stroke: "#8883" }, values: (_u, vals) => vals.map((v) => fmt(v)), size: 70 },
    ],
    series: [
      {},
      { label: "max", stroke: COLORS[kind], width: 1, dash: [2, 3], value: (_u, v) => fmt(v) },
      { label: "avg", stroke: COLORS[kind], width: 2, fill: COLORS[kind] + "22", value: (_u, v) => fmt(v) },
      { label: "limit", stroke: "#e5484d", width: 1.5, dash: [8, 5], value: (_u, v) => fmt(v) },
    ],
    hooks: {
      draw: [
        (u) => {
          // Breach markers on the time axis.
          const ctx = u.ctx;
          ctx.save();
          ctx.fillStyle = "#e5484d";
          for (const t of breaches) {
            const x = u.valToPos(t / 1000, "x", true);
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.fillRect(x - 1, u.bbox.top, 2 * devicePixelRatio, u.bbox.height);
          }
          ctx.restore();
        },
      ],
    },
  };
  const plot = new uPlot(opts, [[], [], [], []], el);
  return {
    el,
    set(points, lim, br) {
      limit = lim;
      breaches = br;
      el.dataset.limit = lim == null ? "" : String(lim);
      el.dataset.breaches = String(br.length);
      const xs = points.map((p) => p.ts_ms / 1000);
      const pick = (p: HistoryPoint) => p[kind];
      const avg = points.map((p) => pick(p)?.[1] ?? null);
      const max = points.map((p) => pick(p)?.[2] ?? null);
      const lim2 = points.map(() => lim);
      plot.setData([xs, max, avg, lim2] as uPlot.AlignedData);
    },
    resize(w) {
      plot.setSize({ width: w, height: 170 });
    },
  };
}
