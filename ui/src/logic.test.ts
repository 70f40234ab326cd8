import { describe, expect, it } from "vitest";
import { actionsFor, ConsoleBuffer, mergeLive, pointOf, timeoutBand } from "./logic";
import type { HistoryPoint, Sample } from "./types";

describe("actions", () => {
  it("follow the state", () => {
    expect(actionsFor("stopped", false)).toEqual({ start: true, stop: false, restart: false, open_browser: false, stop_generation: false });
    expect(actionsFor("generating", true)).toEqual({ start: false, stop: true, restart: true, open_browser: true, stop_generation: true });
    expect(actionsFor("not_configured", false).start).toBe(false);
    expect(actionsFor("starting", true).open_browser).toBe(false);
  });
});

describe("console buffer", () => {
  it("is bounded, ignores repeats, and searches case-insensitively", () => {
    const b = new ConsoleBuffer(3);
    const l = (n: number, text = `line ${n}`) => ({ n, stream: "stdout" as const, text });
    expect(b.push([l(1), l(2), l(3), l(4)])).toBe(1);
    expect(b.lines.map((x) => x.n)).toEqual([2, 3, 4]);
    b.push([l(4), l(5, "Total time: 3 seconds")]);
    expect(b.lines.map((x) => x.n)).toEqual([3, 4, 5]);
    expect(b.search("TOTAL").map((x) => x.n)).toEqual([5]);
    expect(b.search("").length).toBe(3);
    expect(b.lastN()).toBe(5);
  });
});

describe("graph data", () => {
  const sample = (ts: number): Sample => ({
    ts_ms: ts, tree: { cpu_percent: 50, cpu_percent_machine: 25, ram_bytes: 100, ram_source: "cgroup", swap_bytes: 0, processes: 2, vram_bytes: null },
    system: { cpu_percent: 10, ram_used_bytes: 1, ram_total_bytes: 2 },
    gpus: [{ index: 0, name: "g", util_percent: 80, vram_used_bytes: 7, vram_total_bytes: 8, temperature_c: 60 }], gpu_status: "ok",
  });
  it("turns samples into points, VRAM falling back to the device", () => {
    const p = pointOf(sample(1000));
    expect(p.cpu).toEqual([50, 50, 50]);
    expect(p.gpu).toEqual([80, 80, 80]);
    expect(p.vram).toEqual([7, 7, 7]);
  });
  it("merges live points after the history and keeps the range", () => {
    const h: HistoryPoint[] = [pointOf(sample(1000)), pointOf(sample(2000))];
    const merged = mergeLive(h, [pointOf(sample(1500)), pointOf(sample(3000))], 60, 61_500);
    expect(merged.map((p) => p.ts_ms)).toEqual([2000, 3000]);
  });
  it("colours the timeout bar", () => {
    expect(timeoutBand(10, null).band).toBe("ok");
    expect(timeoutBand(80, 100).band).toBe("near");
    expect(timeoutBand(120, 100)).toEqual({ fraction: 1, band: "over" });
  });
});
