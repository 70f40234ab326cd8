// Pure pieces of the UI, unit-tested: which actions a state allows, the console's bounded
// buffer and search, and merging live samples into the graphs' history.
import { ACTIONS } from "./actions.generated";
import type { Actions, ConsoleLine, FooocusState, HistoryPoint, Sample } from "./types";

export type { Actions };

/** The guard's rule (crates/core `Actions::for_state`, generated into actions.generated.ts), for
 *  the mock backend only: the real status carries its actions, which the dashboard renders. */
export function actionsFor(state: FooocusState, hasUrl: boolean): Actions {
  return { ...ACTIONS[state][hasUrl ? 1 : 0] };
}

export const STATE_LABEL: Record<FooocusState, string> = {
  not_configured: "Not set up", stopped: "Stopped", starting: "Starting", ready: "Ready", generating: "Generating",
  stopping: "Stopping", restarting: "Restarting", gave_up: "Keeps failing",
};

/** The console: at most `max` lines, oldest dropped. */
export class ConsoleBuffer {
  lines: ConsoleLine[] = [];
  constructor(readonly max = 5000) {}
  push(batch: ConsoleLine[]): number {
    const last = this.lines.length ? this.lines[this.lines.length - 1].n : 0;
    for (const l of batch) if (l.n > last) this.lines.push(l);
    const drop = Math.max(0, this.lines.length - this.max);
    if (drop) this.lines.splice(0, drop);
    return drop;
  }
  lastN(): number | null {
    return this.lines.length ? this.lines[this.lines.length - 1].n : null;
  }
  search(q: string): ConsoleLine[] {
    const needle = q.trim().toLowerCase();
    return needle ? this.lines.filter((l) => l.text.toLowerCase().includes(needle)) : this.lines;
  }
}

/** A sample as a history point (min = avg = max). */
export function pointOf(s: Sample): HistoryPoint {
  const cpu = s.tree?.cpu_percent ?? 0;
  const ram = s.tree?.ram_bytes ?? 0;
  const utils = s.gpus.map((g) => g.util_percent).filter((v): v is number => v != null);
  const gpu = utils.length ? Math.max(...utils) : null;
  const dev = s.gpus.map((g) => g.vram_used_bytes).filter((v): v is number => v != null);
  const vram = s.tree?.vram_bytes ?? (dev.length ? dev.reduce((a, b) => a + b, 0) : null);
  return { ts_ms: s.ts_ms, cpu: [cpu, cpu, cpu], ram: [ram, ram, ram], gpu: gpu == null ? null : [gpu, gpu, gpu], vram: vram == null ? null : [vram, vram, vram] };
}

/** Append live points after the history's last one, dropping what left the range. */
export function mergeLive(history: HistoryPoint[], live: HistoryPoint[], rangeS: number, nowMs: number): HistoryPoint[] {
  const last = history.length ? history[history.length - 1].ts_ms : -Infinity;
  const from = nowMs - rangeS * 1000;
  return history.concat(live.filter((p) => p.ts_ms > last)).filter((p) => p.ts_ms >= from);
}

/** Fraction of the timeout used, and the colour band the bar should show. */
export function timeoutBand(elapsed: number, timeout: number | null): { fraction: number; band: "ok" | "near" | "over" } {
  if (!timeout) return { fraction: 0, band: "ok" };
  const f = Math.min(1, elapsed / timeout);
  return { fraction: f, band: f >= 1 ? "over" : f >= 0.75 ? "near" : "ok" };
}
