import { afterEach, describe, expect, it, vi } from "vitest";
import { deliver, newHandlers, type UpdateBatch } from "./ipc";
import type { Sample, Status } from "./types";

const batch = (b: Partial<UpdateBatch>): UpdateBatch =>
  ({ status: null, samples: [], console: [], events: [], open_why: false, dropped: 0, ...b });

describe("deliver", () => {
  afterEach(() => {
    vi.clearAllTimers();
    vi.useRealTimers();
  });

  it("hands the status first, then samples in order, the console at once, events, open-why", () => {
    const h = newHandlers();
    const seen: string[] = [];
    h.status.add((s) => seen.push(`status ${s.state}`));
    h.sample.add((s) => seen.push(`sample ${s.ts_ms}`));
    h.console.add((l) => seen.push(`console ${l.map((x) => x.n).join(",")}`));
    h.event.add((e) => seen.push(`event ${e.event}`));
    h.openWhy.add(() => seen.push("why"));
    deliver(batch({
      status: { state: "ready" } as Status,
      samples: [{ ts_ms: 1 } as Sample, { ts_ms: 2 } as Sample],
      console: [{ n: 7, stream: "stdout", text: "a" }, { n: 8, stream: "stderr", text: "b" }],
      events: [{ ts: "t", event: "limit_breached", limit: "vram", configured: 1, observed: 2, action: "stop_generation" },
        { ts: "t", event: "generation_stopped", how: "graceful", limit: "vram", took_s: 1, steps: [], grace_s: 10, grace: "configured" }],
      open_why: true,
    }), h);
    expect(seen).toEqual(["status ready", "sample 1", "sample 2", "console 7,8",
      "event limit_breached", "event generation_stopped", "why"]);
  });

  it("calls nobody for what a batch does not hold", () => {
    const h = newHandlers();
    const f = vi.fn();
    h.status.add(f); h.console.add(f); h.openWhy.add(f);
    deliver(batch({ samples: [{ ts_ms: 1 } as Sample] }), h);
    expect(f).not.toHaveBeenCalled();
  });

  it("a view that throws keeps no other view from its updates, and its error is reported", () => {
    vi.useFakeTimers();
    const h = newHandlers();
    const other = vi.fn();
    h.sample.add(() => { throw new Error("broken view"); });
    h.sample.add(other);
    deliver(batch({ samples: [{ ts_ms: 1 } as Sample, { ts_ms: 2 } as Sample] }), h);
    expect(other).toHaveBeenCalledTimes(2);
    expect(vi.getTimerCount()).toBe(2);
    expect(() => vi.runOnlyPendingTimers()).toThrow("broken view");
  });
});
