import { describe, expect, it } from "vitest";
import { breachOnGraph, generationText, hoverText, lastMinute, legendText, noGpu, ofLimit, progressIndex, StepClock, timeoutElapsed, whyStopped } from "./glance";
import type { EventOf, GenerationProgress, HistoryPoint, Settings, StopStep } from "./types";

const GiB = 1024 ** 3;
const pt = (ts: number, ram: number, vram: number | null = null): HistoryPoint =>
  ({ ts_ms: ts, cpu: [50, 60, 70], ram: [ram, ram, ram + 0.5 * GiB], gpu: null, vram: vram == null ? null : [vram, vram, vram] });
const gen = (over: Partial<GenerationProgress> = {}): GenerationProgress =>
  ({ id: 7, started_ms: 0, image_index: 1, image_total: 2, step: 1, step_total: 30, elapsed_s: 0, timeout_s: 300, phase: null, timeout_from_ms: 0, loads_left_out: true, ...over });

describe("legends", () => {
  it("say the live value against the limit, the window's peak and the limit", () => {
    const t = legendText("ram", [pt(1, 6 * GiB), pt(2, 7.2 * GiB), pt(3, 7.2 * GiB)], 8 * GiB);
    expect(t).toEqual({ now: "Now 7.2 GiB of 8 GiB", peak: "peak 7.7 GiB", limit: "limit 8 GiB" });
    expect(ofLimit("cpu", 95.4, 400)).toBe("95 % of 400 %");
    expect(legendText("ram", [pt(1, GiB)], null).limit).toBe("no limit set");
    expect(legendText("vram", [pt(1, GiB)], 8 * GiB).now).toBe("no data yet");
  });
  it("show the values at the pointer", () => {
    expect(hoverText("ram", 0, 7.2 * GiB, 7.7 * GiB, 8 * GiB)).toMatch(/: 7\.2 GiB of 8 GiB, up to 7\.7 GiB$/);
    expect(hoverText("cpu", 0, 50, 50.2, null)).toMatch(/: 50 %$/);
    expect(hoverText("cpu", 0, null, null, null)).toMatch(/no data$/);
  });
  it("put each breach on its own graph, time limits on all", () => {
    expect(breachOnGraph("vram", "vram")).toBe(true);
    expect(breachOnGraph("vram", "ram")).toBe(false);
    expect(breachOnGraph("memory", "ram")).toBe(true);
    expect(breachOnGraph("timeout", "cpu")).toBe(true);
  });
});

describe("GPU presence", () => {
  it("follows the sampler's status", () => {
    expect(noGpu("ok")).toBe(false);
    expect(noGpu("ok (AMD through sysfs; VRAM per process not supported)")).toBe(false);
    expect(noGpu("not sampled yet")).toBe(false);
    expect(noGpu("no NVIDIA GPU (libnvidia-ml not found)")).toBe(true);
    expect(noGpu("GPU sampling off")).toBe(true);
  });
});

describe("generation pace", () => {
  it("counts steps over all images", () => {
    expect(progressIndex(gen({ image_index: 2, step: 5 }))).toBe(35);
    expect(progressIndex(gen({ step: null }))).toBe(null);
  });
  it("measures time per step from step changes, not from the first update", () => {
    const c = new StepClock();
    c.observe(gen({ step: 3 }), 0); // step 3 may have started long ago
    c.observe(gen({ step: 4 }), 10_000);
    expect(c.perStep()).toBe(null);
    c.observe(gen({ step: 4 }), 11_000);
    c.observe(gen({ step: 6 }), 14_000);
    expect(c.perStep()).toBe(2);
    c.observe(gen({ image_index: 2, step: 1 }), 16_000); // across images: step 31
    expect(c.perStep()).toBeCloseTo(6 / 27, 5); // 27 steps (4 -> 31) in 6 s
  });
  it("starts again for a new generation or when progress goes back", () => {
    const c = new StepClock();
    c.observe(gen({ step: 1 }), 0);
    c.observe(gen({ step: 2 }), 1000);
    c.observe(gen({ step: 3 }), 2000);
    expect(c.perStep()).toBe(1);
    c.observe(gen({ id: 8, step: 4 }), 3000);
    expect(c.perStep()).toBe(null);
    c.observe(null, 4000);
    expect(c.perStep()).toBe(null);
  });
  it("says image, step, pace, ETA and the time left before the timeout", () => {
    const t = generationText(gen({ image_index: 2, step: 10 }), 100, 2);
    expect(t.title).toBe("Generation 7: Image 2 of 2 · step 10 of 30");
    expect(t.pace).toBe("2 s per step · about 40 s to go");
    expect(t.timeLeft).toBe("3 min 20 s left before the 5 min timeout");
    expect(t.timeoutNear).toBe(false);
    expect(generationText(gen(), 290, null).timeoutNear).toBe(true);
    expect(generationText(gen(), 310, null).timeLeft).toBe("Past the 5 min timeout");
    expect(generationText(gen({ timeout_s: null }), 10, null).timeLeft).toBe("No timeout set");
    expect(generationText(gen({ image_index: null, step: null, step_total: null }), 1, null).title).toBe("Generation 7: Preparing");
  });
});

describe("the timeout's count", () => {
  it("leaves out a model load, and holds while one runs", () => {
    // Started at 0, a 60 s load finished: the timeout counts from 60 s.
    expect(timeoutElapsed(gen({ started_ms: 0, timeout_from_ms: 60_000 }), 100_000, null)).toBe(40);
    // A load under way, seen at 70 s: held at 10 s.
    expect(timeoutElapsed(gen({ timeout_from_ms: 60_000, phase: "model_load" }), 500_000, 70_000)).toBe(10);
    // An older guard's status without the field: from the start.
    expect(timeoutElapsed(gen({ started_ms: 5_000, timeout_from_ms: 0 }), 15_000, null)).toBe(10);
    expect(generationText(gen({ phase: "preparation", step: null, step_total: null }), 1, null).pace).toBe("Preparing the prompt");
    expect(generationText(gen({ phase: "model_load" }), 1, null).pace).toContain("not counted by the timeout");
    // Later generations of the same Fooocus count their loads (a move to the device before sampling).
    expect(timeoutElapsed(gen({ timeout_from_ms: 0, phase: "model_load", loads_left_out: false }), 100_000, 70_000)).toBe(100);
    expect(generationText(gen({ phase: "model_load", loads_left_out: false }), 1, null).pace).toBe("Loading the model");
  });
});

describe("why it stopped", () => {
  /** The events as the guard sends them, with what a test does not set. */
  const stop = (e: Partial<EventOf<"generation_stopped">>): EventOf<"generation_stopped"> =>
    ({ ts: "x", event: "generation_stopped", how: "killed", limit: null, took_s: 1, steps: [], grace_s: 0, grace: "none", ...e });
  const breachOf = (e: Partial<EventOf<"limit_breached">>): EventOf<"limit_breached"> =>
    ({ ts: "x", event: "limit_breached", limit: "timeout", configured: 0, observed: 0, action: "stop_generation", ...e });
  const settings = { launch: { vram_mode: null }, limits: { cpu_percent: 400 } } as unknown as Settings;
  const breach = breachOf({ ts: "2026-01-01T00:00:00.000Z", limit: "vram", configured: 7 * GiB, observed: 7.4 * GiB, action: "stop_generation", generation_id: 42 });
  it("explains a graceful VRAM stop and suggests a lower-VRAM mode", () => {
    const w = whyStopped(stop({ generation_id: 42, how: "graceful", limit: "vram", took_s: 2.4, steps: [], grace_s: 10, grace: "configured" }), breach, settings);
    expect(w.headline).toBe("Generation 42 used 7.4 GiB of VRAM, over its 7 GiB limit.");
    expect(w.did).toContain("asked Fooocus to stop");
    expect(w.did).toContain("10 s grace (the configured grace)");
    expect(w.suggestion).toContain("always-low-vram");
  });
  it("suggests a lower resolution when already in low-VRAM mode", () => {
    const low = { ...settings, launch: { vram_mode: "always-low-vram" } } as unknown as Settings;
    const w = whyStopped(stop({ how: "graceful", limit: "vram", grace_s: 10, grace: "configured" }), breach, low);
    expect(w.suggestion).toContain("lower resolution");
  });
  it("explains a kill after the grace, and a timeout", () => {
    const b = breachOf({ limit: "timeout", configured: 300, observed: 300.02 });
    const w = whyStopped(stop({ generation_id: 9, how: "killed", limit: "timeout", took_s: 12, grace_s: 12, grace: "one step" }), b, settings);
    expect(w.headline).toBe("Generation 9 ran for 5 min, past its 5 min timeout (all of a generation counts, except model loading in the first one after Fooocus starts).");
    expect(w.did).toContain("killed Fooocus and restarted it");
    expect(w.did).toContain("one step's time");
    expect(w.suggestion).toContain("Raise the timeout");
    const none = whyStopped(stop({ how: "killed", limit: "memory", grace_s: 0, grace: "none" }), null, settings);
    expect(none.did).toContain("could not be asked to stop gracefully");
    expect(none.headline).toBe("The generation went over the RAM limit.");
  });
  it("tells a stop request Fooocus never answered (frozen) from one it ignored", () => {
    const b = breachOf({ limit: "stall", configured: 120, observed: 120 });
    const steps: StopStep[] = [{ step: "graceful", at_s: 0, took_s: 10, result: "failed: GET /config to Fooocus: no answer in 10 s" }, { step: "kill", at_s: 10, took_s: 1, result: "reaped 1 processes" }];
    const w = whyStopped(stop({ generation_id: 4, how: "killed", limit: "stall", took_s: 11, steps, grace_s: 11.4, grace: "one step" }), b, settings);
    expect(w.did).toContain("Fooocus did not answer the request (GET /config to Fooocus: no answer in 10 s): it may be frozen. So the guard killed Fooocus and restarted it.");
    expect(w.did).not.toContain("had not stopped");
  });
  it("names the phase a stop before the first step waited for, not only the timeout", () => {
    const b = breachOf({ limit: "timeout", configured: 300, observed: 300.02, phase: "preparation" });
    const w = whyStopped(stop({ generation_id: 9, how: "graceful", limit: "timeout", took_s: 40, grace_s: 90,
      grace: "until the first step", phase: "preparation" }), b, settings);
    expect(w.did).toContain("Fooocus was still preparing the prompt");
    expect(w.did).toContain("(until its first sampling step");
    expect(w.suggestion).not.toContain("Raise the timeout in Settings (to");
    expect(w.suggestion).toContain("still preparing");
  });
  it("does not say restarted when the restart policy is never", () => {
    const never = { ...settings, restart: { policy: "never" } } as unknown as Settings;
    const w = whyStopped(stop({ how: "killed", limit: "memory", grace_s: 0, grace: "none" }), null, never);
    expect(w.did).toContain("it stays stopped");
    expect(w.did).not.toContain("restarted");
  });
  it("shows the guard's own summary from the event when it carries one", () => {
    const summary = { headline: "Generation 42 used 7.4 GiB of VRAM, over its 7 GiB limit.", did: "The guard did X.", suggestion: "Try Y." };
    const w = whyStopped(stop({ generation_id: 42, how: "graceful", limit: "vram", grace_s: 10, grace: "configured", summary }), breach, settings);
    expect([w.headline, w.did, w.suggestion]).toEqual([summary.headline, summary.did, summary.suggestion]);
    expect(w.limit).toBe("vram");
  });
  it("ignores a breach of another generation or limit", () => {
    const stopped = stop({ generation_id: 43, how: "graceful", limit: "vram", grace_s: 10, grace: "configured" });
    expect(whyStopped(stopped, breach, settings).headline).toBe("Generation 43 went over the VRAM limit.");
    const ram = breachOf({ ...breach, generation_id: 43, limit: "memory" });
    expect(whyStopped(stopped, ram, settings).headline).toBe("Generation 43 went over the VRAM limit.");
  });
  it("keeps the last minute before the stop", () => {
    const pts = [pt(0, 1), pt(30_000, 1), pt(70_000, 1), pt(100_000, 1), pt(130_000, 1)];
    expect(lastMinute(pts, 100_000).map((p) => p.ts_ms)).toEqual([70_000, 100_000]);
  });
});
