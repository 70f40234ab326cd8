// Pure pieces of the dashboard that turn figures into words, unit-tested: the graphs' legends,
// whether there is a GPU at all, the current generation's pace, and why a limit stopped one.
import type { EventOf, GenerationProgress, HistoryPoint, Settings } from "./types";
import { formatDuration, formatSize } from "./units";

export type Series = "cpu" | "ram" | "gpu" | "vram";

export function formatValue(kind: Series, v: number | null | undefined): string {
  if (v == null || !Number.isFinite(v)) return "—";
  return kind === "ram" || kind === "vram" ? formatSize(v) : `${Math.round(v)} %`;
}

/** "7.2 GiB of 8 GiB", or the bare value when there is no limit. */
export function ofLimit(kind: Series, v: number | null | undefined, limit: number | null): string {
  const value = formatValue(kind, v);
  return limit == null || v == null ? value : `${value} of ${formatValue(kind, limit)}`;
}

export interface LegendText { now: string; peak: string; limit: string }

/** The legend when the pointer is not over the graph: the live value against the limit, the
 *  window's peak and the limit in words. */
export function legendText(kind: Series, points: HistoryPoint[], limit: number | null): LegendText {
  let live: number | null = null;
  let peak: number | null = null;
  for (const p of points) {
    const t = p[kind];
    if (!t) continue;
    live = t[1];
    if (peak == null || t[2] > peak) peak = t[2];
  }
  const noLimit = kind === "gpu" ? "" : "no limit set";
  return {
    now: live == null ? "no data yet" : `Now ${ofLimit(kind, live, limit)}`,
    peak: peak == null ? "" : `peak ${formatValue(kind, peak)}`,
    limit: limit == null ? noLimit : `limit ${formatValue(kind, limit)}`,
  };
}

/** The legend while hovering: the values at that time. */
export function hoverText(kind: Series, tsMs: number, avg: number | null, max: number | null, limit: number | null): string {
  const at = new Date(tsMs).toLocaleTimeString();
  if (avg == null) return `${at}: no data`;
  const peak = max != null && Math.abs(max - avg) > (kind === "ram" || kind === "vram" ? 1024 ** 2 : 0.5) ? `, up to ${formatValue(kind, max)}` : "";
  return `${at}: ${ofLimit(kind, avg, limit)}${peak}`;
}

/** The sampler's GPU status (Status.gpu_status) says no GPU can be read: "ok..." means one can,
 *  "not sampled yet" means we do not know yet. */
export function noGpu(gpuStatus: string | null | undefined): boolean {
  if (!gpuStatus) return false;
  return !gpuStatus.startsWith("ok") && gpuStatus !== "not sampled yet";
}

export const LIMIT_NAME: Record<string, string> = {
  timeout: "timeout", stall: "stall", startup: "start-up", memory: "RAM", swap: "swap", vram: "VRAM", cpu: "CPU",
};

/** Which graph a breach of `limit` belongs on (time limits belong on every graph). */
export function breachOnGraph(limit: string, kind: Series): boolean {
  if (limit === "memory" || limit === "swap") return kind === "ram";
  if (limit === "vram") return kind === "vram";
  if (limit === "cpu") return kind === "cpu";
  return true;
}

/** Time per step measured from the step changes seen in status updates (the contract carries
 *  the step, not its pace). The first change starts the clock: the step seen at the first update
 *  may have begun long before. */
export class StepClock {
  private id: number | null = null;
  private last: number | null = null;
  private first: { p: number; t: number } | null = null;
  private latest: { p: number; t: number } | null = null;

  observe(g: GenerationProgress | null, nowMs: number): void {
    if (!g) { this.reset(null); return; }
    const p = progressIndex(g);
    if (g.id !== this.id || p == null || (this.last != null && p < this.last)) this.reset(g.id);
    if (p == null) return;
    if (this.last != null && p > this.last) {
      if (!this.first) this.first = { p: this.last + 1, t: nowMs };
      // The first change marks step last+1 starting; later ones extend the measured span.
      this.latest = { p, t: nowMs };
    }
    this.last = p;
  }

  /** Seconds per step, or null until two step changes were seen. */
  perStep(): number | null {
    if (!this.first || !this.latest || this.latest.p <= this.first.p) return null;
    return (this.latest.t - this.first.t) / 1000 / (this.latest.p - this.first.p);
  }

  private reset(id: number | null) {
    this.id = id;
    this.last = null;
    this.first = null;
    this.latest = null;
  }
}

/** Steps done over all images (image i of N, step k of K -> (i-1)*K + k). */
export function progressIndex(g: GenerationProgress): number | null {
  if (g.step == null || !g.step_total) return null;
  return ((g.image_index ?? 1) - 1) * g.step_total + g.step;
}

export interface GenerationText { title: string; pace: string; timeLeft: string; timeoutNear: boolean }

/** Seconds the timeout has counted at `nowMs`: from `timeout_from_ms`; in the first generation
 *  after a start (`loads_left_out`) held where a model load began (`loadSeenMs`, when the
 *  dashboard saw it) while one runs. */
export function timeoutElapsed(g: GenerationProgress, nowMs: number, loadSeenMs: number | null): number {
  const upTo = g.loads_left_out && g.phase === "model_load" && loadSeenMs != null ? Math.min(nowMs, loadSeenMs) : nowMs;
  return Math.max(0, (upTo - (g.timeout_from_ms || g.started_ms)) / 1000);
}

/** What the generation is doing, in words, by its phase. */
const PHASE_WORDS: Record<string, string> = {
  model_load: "Loading the model",
  preparation: "Preparing the prompt",
  decode: "Decoding the image",
  saving: "Saving the image",
};

export function generationText(g: GenerationProgress, elapsedS: number, perStep: number | null): GenerationText {
  const image = g.image_index && g.image_total ? `Image ${g.image_index} of ${g.image_total}` : "Preparing";
  const doing = g.phase ? PHASE_WORDS[g.phase] : undefined;
  const step = g.step && g.step_total ? ` · step ${g.step} of ${g.step_total}` : "";
  const p = progressIndex(g);
  let pace = "Measuring the time per step…";
  if (doing && g.phase !== "sampling") pace = g.phase === "model_load" && g.loads_left_out ? `${doing} (not counted by the timeout)` : doing;
  else if (!g.step_total) pace = "Waiting for the first step";
  else if (perStep != null && p != null) {
    const remaining = Math.max(0, (g.image_total ?? g.image_index ?? 1) * g.step_total - p);
    pace = `${formatDuration(perStep)} per step · about ${formatDuration(Math.round(remaining * perStep))} to go`;
  }
  let timeLeft = "No timeout set";
  let timeoutNear = false;
  if (g.timeout_s) {
    const left = g.timeout_s - elapsedS;
    timeLeft = left > 0 ? `${formatDuration(Math.round(left))} left before the ${formatDuration(g.timeout_s)} timeout` : `Past the ${formatDuration(g.timeout_s)} timeout`;
    timeoutNear = left <= 0.25 * g.timeout_s;
  }
  return { title: `Generation ${g.id}: ${image}${step}`, pace, timeLeft, timeoutNear };
}

/** The last minute before `tsMs` of the history the dashboard has. */
export function lastMinute(points: HistoryPoint[], tsMs: number): HistoryPoint[] {
  return points.filter((p) => p.ts_ms <= tsMs && p.ts_ms >= tsMs - 60_000);
}

export interface WhyStopped { headline: string; did: string; suggestion: string; limit: string; /** when the limit was breached */ atMs: number }

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

function limitValue(limit: string, v: number | null): string {
  if (v == null) return "—";
  if (limit === "memory" || limit === "swap" || limit === "vram") return formatSize(v);
  if (limit === "cpu") return `${Math.round(v)} % of one core`;
  return formatDuration(Math.round(v * 10) / 10);
}

/** The "why it stopped" card's words from the `limit_breached` and `generation_stopped` events. */
const GRACE_WHY: Record<string, string> = {
  "one step": " (one step's time, longer than the configured grace)",
  configured: " (the configured grace)",
  "until the first step": " (until its first sampling step, bounded by how long that took before)",
  "until the next step or the end": " (until its next step or the end, bounded by how long that took before)",
};
const PHASE_WHERE: Record<string, string> = {
  model_load: " Fooocus was still loading the model, and it looks at Stop only at its first sampling step.",
  preparation: " Fooocus was still preparing the prompt (expanding and encoding it), and it looks at Stop only at its first sampling step.",
  decode: " Fooocus was decoding an image (the VAE), and it looks at Stop only at its next sampling step.",
  saving: " Fooocus was saving an image, and it looks at Stop only at its next sampling step.",
};

export function whyStopped(stopped: EventOf<"generation_stopped">, lastBreach: EventOf<"limit_breached"> | null, settings: Settings | null): WhyStopped {
  // Only the breach that caused this stop: same limit, same generation when both say which.
  const breach = lastBreach && (stopped.limit == null || lastBreach.limit === stopped.limit)
    && (lastBreach.generation_id == null || stopped.generation_id == null || lastBreach.generation_id === stopped.generation_id) ? lastBreach : null;
  const limit = String(stopped.limit ?? breach?.limit ?? "");
  const name = LIMIT_NAME[limit] ?? limit;
  const gen = stopped.generation_id != null ? `Generation ${stopped.generation_id}` : "The generation";
  const configured = num(breach?.configured);
  const observed = num(breach?.observed);
  let headline: string;
  if (limit === "timeout") headline = `${gen} ran for ${limitValue(limit, observed ?? configured)}, past its ${limitValue(limit, configured)} timeout (all of a generation counts, except model loading in the first one after Fooocus starts).`;
  else if (limit === "stall") headline = `${gen} made no progress for ${limitValue(limit, observed ?? configured)} (stall limit ${limitValue(limit, configured)}).`;
  else if (breach && configured != null) headline = `${gen} used ${limitValue(limit, observed)} of ${name}, over its ${limitValue(limit, configured)} limit.`;
  else headline = `${gen} went over the ${name} limit.`;

  const grace = num(stopped.grace_s) ?? 0;
  const graceWhy = GRACE_WHY[String(stopped.grace)] ?? "";
  // Fooocus looks at Stop only between sampling steps: say where it was.
  const where = PHASE_WHERE[String(stopped.phase)] ?? "";
  const restarted = settings?.restart?.policy === "never" ? "killed Fooocus; it stays stopped (restart policy: never)" : "killed Fooocus and restarted it";
  const took = num(stopped.took_s);
  const tookText = took == null ? "" : ` It was over ${formatDuration(Math.round(took * 10) / 10)} after the limit fell due.`;
  // The stop's request itself failed (a frozen Fooocus does not answer): not "not stopped after the grace".
  const steps = Array.isArray(stopped.steps) ? (stopped.steps as { step?: unknown; result?: unknown }[]) : [];
  const failed = steps.map((st) => (st.step === "graceful" && typeof st.result === "string" && st.result.startsWith("failed: ") ? st.result.slice(8) : null)).find((r) => r != null);
  let did: string;
  if (stopped.how !== "graceful" && failed != null) did = `The guard asked Fooocus to stop, but Fooocus did not answer the request (${failed}): it may be frozen. So the guard ${restarted}.${where}${tookText}`;
  else if (stopped.how === "graceful") did = `The guard asked Fooocus to stop the generation, as the Stop button does, and Fooocus stopped within the ${formatDuration(grace)} grace${graceWhy}.${where}${tookText}`;
  else if (grace > 0) did = `The guard asked Fooocus to stop, but it had not stopped after the ${formatDuration(grace)} grace${graceWhy}, so the guard ${restarted}.${where}${tookText}`;
  else did = `Fooocus could not be asked to stop gracefully, so the guard ${restarted.replace("Fooocus", "it")}.${where}${tookText}`;

  const lim = settings?.limits;
  const suggestedSize = (v: number | null) => (v == null ? null : formatSize(Math.ceil((v * 1.25) / 1024 ** 3) * 1024 ** 3));
  let suggestion: string;
  switch (limit) {
    case "vram": {
      const mode = settings?.launch.vram_mode;
      suggestion = mode === "always-low-vram" || mode === "always-no-vram" || mode === "always-cpu"
        ? "Generate at a lower resolution (a smaller aspect ratio in Fooocus), or raise the VRAM limit in Settings."
        : "Start Fooocus in a lower-VRAM mode: Settings → Launch → VRAM mode → always-low-vram (slower, but it fits).";
      break;
    }
    case "memory": suggestion = `Raise the RAM limit in Settings${suggestedSize(observed) ? ` (to about ${suggestedSize(observed)})` : ""}, or close other programs first.`; break;
    case "swap": suggestion = "Raise the swap limit in Settings, or give Fooocus more RAM so it swaps less."; break;
    case "cpu": suggestion = `Raise the CPU limit in Settings${lim?.cpu_percent ? ` (now ${lim.cpu_percent} %, 100 % = one core)` : ""}.`; break;
    case "timeout":
      if (stopped.phase === "preparation" || stopped.phase === "model_load") {
        suggestion = "Fooocus was still preparing when the timeout fell due: prompt expansion and encoding count toward the timeout, and they can take minutes on a CPU. Give the timeout room for them (History shows how long preparation took), or turn off the Fooocus V2 style to skip the expansion.";
        break;
      }
      suggestion = `Raise the timeout in Settings${observed ? ` (to ${formatDuration(Math.ceil((observed * 1.5) / 60) * 60)} or more)` : ""}, or generate fewer images or a lower resolution at a time.`; break;
    case "stall": suggestion = "Raise the stall limit in Settings if the first step often takes this long (model loading), or check the console for an error."; break;
    default: suggestion = `Raise the ${name} limit in Settings.`;
  }
  // The guard puts the same summary in the event (crates/core/src/words/why.rs): its words win, so the
  // card and the event log never disagree.
  const told = stopped.summary as { headline?: unknown; did?: unknown; suggestion?: unknown } | null | undefined;
  if (told && typeof told.headline === "string" && typeof told.did === "string" && typeof told.suggestion === "string") {
    ({ headline, did, suggestion } = { headline: told.headline, did: told.did, suggestion: told.suggestion });
  }
  return { headline, did, suggestion, limit, atMs: Date.parse(String(breach?.ts ?? stopped.ts)) };
}
