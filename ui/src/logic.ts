// Pure pieces of the UI, unit-tested: which actions a state allows, the console's bounded
// buffer and search, and merging live samples into the graphs' history.
import { ACTIONS } from "./generated/actions";
import type { Actions, ConsoleLine, FooocusState, HistoryPoint, Sample, SaveResult, SleepInfo } from "./types";
import { formatSize } from "./units";

export type { Actions };

/** The guard's rule (crates/core `Actions::for_state`, generated into generated/actions.ts), for
 *  the mock backend only: the real status carries its actions, which the dashboard renders. */
export function actionsFor(state: FooocusState, hasUrl: boolean): Actions {
  return { ...ACTIONS[state][hasUrl ? 1 : 0] };
}

export const STATE_LABEL: Record<FooocusState, string> = {
  not_configured: "Not set up", stopped: "Stopped", starting: "Starting", ready: "Ready", generating: "Generating",
  stopping: "Stopping", restarting: "Restarting", gave_up: "Keeps failing", asleep: "Asleep",
};

/** The asleep line (the guard's SleepInfo::summary, which the tray shows): what the sleep gave
 *  back as the sampler measured it (the machine's drop; what the tree held when others grew). */
export function sleepLine(s: SleepInfo): string {
  if (s.waking) return `Waking Fooocus up, about ${Math.round(Math.max(1, s.wake_estimate_s))} s`;
  const ram = s.ram_before_bytes != null && s.ram_after_bytes != null && s.ram_before_bytes > s.ram_after_bytes
    ? s.ram_before_bytes - s.ram_after_bytes : s.held_ram_bytes;
  const vram = s.vram_before_bytes != null && s.vram_after_bytes != null ? Math.max(0, s.vram_before_bytes - s.vram_after_bytes) : null;
  const freed = [ram != null ? `${formatSize(ram)} RAM` : null, vram != null ? `${formatSize(vram)} VRAM` : null].filter(Boolean);
  let line = "Asleep: wakes when you open Fooocus";
  if (freed.length) line += ` (${freed.join(", ")} given back)`;
  if (s.wake_failed) line += `; the last wake failed: ${s.wake_failed}`;
  return line;
}

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

/** What each limit's histogram in the settings shows: the history's statistics to ask for (the
 *  quantity that limit measures) and its name in words. The stall limit measures the longest
 *  wait without progress, not how long a generation ran. */
export const LIMIT_QUANTITY: Record<string, { stats: string; quantity: string }> = {
  timeout_s: { stats: "timeout", quantity: "time the timeout counted (the first generation's model loads left out)" },
  stall_timeout_s: { stats: "stall", quantity: "longest wait without progress" },
  memory_bytes: { stats: "memory", quantity: "peak RAM" },
  swap_bytes: { stats: "swap", quantity: "peak swap" },
  vram_bytes: { stats: "vram", quantity: "peak VRAM" },
  cpu_percent: { stats: "cpu", quantity: "peak CPU" },
};

/** The one sentence the settings and the why-card say about what the timeout counts. */
export const TIMEOUT_COUNTS = "The timeout counts the whole generation, except the model loads of the first one after Fooocus starts (it loads what later ones reuse).";

/** The settings panel's answer to a saved change: what is in effect now, what waits for a
 *  Fooocus restart (the panel adds its Restart now button after it), and what waits for
 *  Fooocus Guard itself to restart (null: nothing waits). */
export function saveSummary(r: SaveResult): { now: string; fooocus: string | null; guard: string | null } {
  return {
    now: r.applied_live.length ? `Applied now: ${r.applied_live.join(", ")}.` : "Saved.",
    fooocus: r.needs_restart.length ? `Needs a Fooocus restart: ${r.needs_restart.join(", ")}.` : null,
    guard: r.needs_guard_restart.length
      ? `Needs a Fooocus Guard restart (quit it and start it again): ${r.needs_guard_restart.join(", ")}.` : null,
  };
}
