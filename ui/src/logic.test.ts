import { describe, expect, it } from "vitest";
import { actionsFor, ConsoleBuffer, LIMIT_QUANTITY, mergeLive, pointOf, saveSummary, sleepLine, timeoutBand } from "./logic";
import type { HistoryPoint, Sample } from "./types";

describe("actions", () => {
  it("follow the state", () => {
    expect(actionsFor("stopped", false)).toEqual({ start: true, stop: false, restart: false, open_browser: false, stop_generation: false, sleep: false, wake: false });
    expect(actionsFor("generating", true)).toEqual({ start: false, stop: true, restart: true, open_browser: true, stop_generation: true, sleep: false, wake: false });
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
    ts_ms: ts, tree: { cpu_percent: 50, cpu_percent_machine: 25, ram_bytes: 100, ram_source: "cgroup", swap_bytes: 0, commit_bytes: null, processes: 2, vram_bytes: null, vram_source: "device" },
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

describe("limit histograms", () => {
  it("ask each limit's history for the quantity that limit measures", () => {
    // Issue 26: the stall limit's histogram showed total durations, so "would have stopped 2 of 19
    // past generations" counted long generations, not long waits.
    expect(LIMIT_QUANTITY.stall_timeout_s.stats).toBe("stall");
    expect(LIMIT_QUANTITY.stall_timeout_s.quantity).toContain("without progress");
    expect(LIMIT_QUANTITY.timeout_s.stats).toBe("timeout");
    expect(LIMIT_QUANTITY.memory_bytes.stats).toBe("memory");
    expect(LIMIT_QUANTITY.startup_timeout_s).toBeUndefined();
  });
});

describe("asleep line", () => {
  const GiB = 1024 ** 3;
  const base = { since_ms: 0, idle_s: 1200, held_ram_bytes: 9 * GiB, ram_before_bytes: 20 * GiB, ram_after_bytes: 12 * GiB,
    vram_before_bytes: 7 * GiB, vram_after_bytes: GiB, wake_estimate_s: 24.6, waking: false, wake_failed: null };
  it("says what the sleep gave back, as the Rust side does", () => {
    expect(sleepLine(base)).toBe("Asleep: wakes when you open Fooocus (8 GiB RAM, 6 GiB VRAM given back)");
    expect(sleepLine({ ...base, ram_after_bytes: 21 * GiB, vram_before_bytes: null })).toBe("Asleep: wakes when you open Fooocus (9 GiB RAM given back)");
    expect(sleepLine({ ...base, waking: true })).toBe("Waking Fooocus up, about 25 s");
    expect(sleepLine({ ...base, held_ram_bytes: null, ram_before_bytes: null, vram_before_bytes: null, wake_failed: "Fooocus exited with code 1" }))
      .toBe("Asleep: wakes when you open Fooocus; the last wake failed: Fooocus exited with code 1");
  });
  it("is known to the state labels", () => {
    expect(actionsFor("asleep", false)).toMatchObject({ wake: true, stop: true, start: false });
  });
});

describe("save summary", () => {
  const r = { saved: true, errors: [], applied_live: [], needs_restart: [], needs_guard_restart: [] };
  it("says what took effect and what waits for which restart", () => {
    expect(saveSummary({ ...r, applied_live: ["limits", "metrics"], needs_restart: ["launch options"], needs_guard_restart: ["NVML library"] })).toEqual({
      now: "Applied now: limits, metrics.",
      fooocus: "Needs a Fooocus restart: launch options.",
      guard: "Needs a Fooocus Guard restart (quit it and start it again): NVML library.",
    });
  });
  it("says Saved. when nothing changed", () => {
    expect(saveSummary(r)).toEqual({ now: "Saved.", fooocus: null, guard: null });
  });
});
