// A fake backend for the mock build (a plain browser, no Tauri): a simulated Fooocus with
// moving samples, a generation that runs into its timeout, history rows and the same
// validation rules as the Rust side. Used by tests/browser.mjs and for demos of the UI.
// ?gpu=none simulates a machine without a GPU; ?install=partial an install an earlier attempt left
// half done (until install_discard); window.mockGuard.stopByLimit("vram") plays the
// events a limit stop sends (limit_breached, then generation_stopped).
import { mockIPC, mockWindows } from "@tauri-apps/api/mocks";
import type { BreachRecord, ConsoleLine, FieldError, GenerationRecord, GuardEvent, HistoryPoint, Sample, Settings, Status, UpdateBatch } from "../types";
import type { Granted } from "../generated/commands";
import { actionsFor } from "../logic";

const GiB = 1024 ** 3;
const now = () => Date.now();

const settings: Settings = {
  install_path: "/home/you/Fooocus", python: null,
  launch: { preset: null, vram_mode: null, port: 7865, listen: null, extra_args: [], auto_update: false },
  restart: { policy: "on-failure", max_restarts: 5, window_s: 600 },
  limits: { timeout_s: 300, stall_timeout_s: 120, startup_timeout_s: 600, memory_bytes: 12 * GiB, swap_bytes: null, vram_bytes: 7 * GiB, cpu_percent: 400, grace_s: 10 },
  sampling_interval_ms: 1000, notifications: { enabled: true, on_ready: false, on_finished: false }, metrics: { enabled: false, port: 9465 },
  gateway: { enabled: true, token: null, rate_per_minute: null, allowed_origins: [] }, log_prompts: false, start_with_session: false,
  containment: "auto", nvml_library: null, sleep_after_s: 1200, open_browser: false,
};

const params = new URLSearchParams(location.search);
const hasGpu = params.get("gpu") !== "none";
let installFinished: string[] = params.get("install") === "partial" ? ["download", "verify"] : [];
const status: Status = {
  state: params.get("state") === "not_configured" ? "not_configured" : params.get("state") === "asleep" ? "asleep" : "generating",
  url: "http://127.0.0.1:7865", install: { root: "/home/you/Fooocus", kind: "venv", python: "/home/you/Fooocus/fooocus_env/bin/python", fooocus_dir: "/home/you/Fooocus", entry: "/home/you/Fooocus/entry_with_update.py", version: "2.5.5", fork: "fooocus" },
  backend: { kind: "cgroup-v2", reason: "cgroup v2 at /sys/fs/cgroup/user.slice/.../fooocus-guard/1234-1-fooocus with the memory, cpu and pids controllers", unenforced: [] },
  gpu_status: hasGpu ? "ok" : "no NVIDIA GPU (libnvidia-ml not found)", generation: { id: 42, started_ms: now() - 95_000, image_index: 2, image_total: 4, step: 17, step_total: 30, elapsed_s: 95, timeout_s: 300, phase: "sampling", timeout_from_ms: now() - 95_000, loads_left_out: false },
  unseen_breach: false, graceful_stop: { available: true, why: "Fooocus can be asked to stop a generation" }, demo: true, restarts: 1,
  pid: null, actions: actionsFor("generating", true), download: null, sleep: null, sleep_spans: [],
};
status.actions = actionsFor(status.state, !!status.url);
// ?state=asleep: Fooocus asleep for 40 min after 20 min idle, with what that gave back.
if (status.state === "asleep") {
  status.generation = null;
  status.sleep = { since_ms: now() - 40 * 60_000, idle_s: 1200, held_ram_bytes: 9.1 * GiB, ram_before_bytes: 21.4 * GiB, ram_after_bytes: 12.6 * GiB,
    vram_before_bytes: hasGpu ? 7.2 * GiB : null, vram_after_bytes: hasGpu ? 0.6 * GiB : null, wake_estimate_s: 24, waking: false, wake_failed: null };
  status.sleep_spans = [{ asleep_ms: now() - 5 * 3600_000, woke_ms: now() - 4.2 * 3600_000 }, { asleep_ms: now() - 40 * 60_000, woke_ms: null }];
}

const gens: GenerationRecord[] = Array.from({ length: 24 }, (_, i) => {
  const outcome = i % 9 === 4 ? "timed_out" : i % 11 === 7 ? "out_of_memory" : "completed";
  const dur = 40 + ((i * 37) % 90) + (outcome === "timed_out" ? 300 : 0);
  const start = now() - (i + 1) * 600_000;
  return { id: 41 - i, started_ms: start, ended_ms: start + dur * 1000, duration_s: dur, outcome, closed_by: outcome === "completed" ? "task_end" : "limit",
    images_done: outcome === "completed" ? 2 : 1, images_total: 2, last_step: 30, steps_total: 30, peak_ram_bytes: (7 + (i % 5)) * GiB,
    peak_swap_bytes: 0, peak_vram_bytes: (5 + (i % 3) * 0.7) * GiB, peak_cpu_percent: 110 + (i % 4) * 20,
    limit: outcome === "timed_out" ? "timeout" : outcome === "out_of_memory" ? "vram" : null, stop_how: outcome === "completed" ? null : "killed",
    stop_steps: null, fooocus_version: "2.5.5",
    model_load_s: i === 23 ? 25 : 0, preparation_s: 16 + (i % 4) * 8, sampling_s: dur - 30, decode_s: 10, saving_s: 0.5,
    step_s: (dur - 30) / 30, longest_gap_s: 16 + (i % 4) * 8 };
});
const breaches: BreachRecord[] = [
  { id: 2, ts_ms: now() - 240_000, limit: "timeout", configured: 300, observed: 300.02, action: "kill_and_restart", how: "killed", generation_id: 37 },
  { id: 1, ts_ms: now() - 3_000_000, limit: "vram", configured: 7 * GiB, observed: 7.4 * GiB, action: "stop_generation", how: "graceful", generation_id: 34 },
];

let n = 0;
const consoleLines: ConsoleLine[] = [];
const say = (text: string, stream: ConsoleLine["stream"] = "stdout") => { const l = { n: ++n, stream, text }; consoleLines.push(l); return l; };
["Fooocus version: 2.5.5", "Running on local URL:  http://127.0.0.1:7865", "App started successful. Use the app with http://127.0.0.1:7865/ or 127.0.0.1:7865",
  "[Parameters] Adaptive CFG = 7", "[Fooocus] Preparing task 2/4 ..."].forEach((t) => say(t));

/** Asleep at `t` (the mock's ?state=asleep spans): no tree, nothing held. */
const sleeping = (t: number) => (status.sleep_spans ?? []).some((p) => t >= p.asleep_ms && (p.woke_ms == null || t < p.woke_ms));
function sample(t: number): Sample {
  const k = t / 1000;
  if (sleeping(t)) {
    return { ts_ms: t, tree: null, system: { cpu_percent: 8, ram_used_bytes: 12.6 * GiB, ram_total_bytes: 32 * GiB },
      gpus: hasGpu ? [{ index: 0, name: "NVIDIA GeForce RTX 3060", util_percent: 0, vram_used_bytes: 0.6 * GiB, vram_total_bytes: 12 * GiB, temperature_c: 41 }] : [], gpu_status: status.gpu_status };
  }
  return { ts_ms: t, tree: { cpu_percent: 95 + 30 * Math.sin(k / 7), cpu_percent_machine: 12, ram_bytes: (8.5 + Math.sin(k / 30)) * GiB, ram_source: "cgroup", swap_bytes: 0, commit_bytes: null, processes: 3, vram_bytes: hasGpu ? (5.8 + 0.6 * Math.sin(k / 11)) * GiB : null,
      vram_source: hasGpu ? "nvml" : null },
    system: { cpu_percent: 30 + 10 * Math.sin(k / 5), ram_used_bytes: 14 * GiB, ram_total_bytes: 32 * GiB },
    gpus: hasGpu ? [{ index: 0, name: "NVIDIA GeForce RTX 3060", util_percent: 90 + 8 * Math.sin(k / 3), vram_used_bytes: 6.4 * GiB, vram_total_bytes: 12 * GiB, temperature_c: 68 }] : [], gpu_status: status.gpu_status };
}
function history(rangeS: number): HistoryPoint[] {
  const step = Math.max(1, Math.floor(rangeS / 600)) * 1000;
  const pts: HistoryPoint[] = [];
  for (let t = now() - rangeS * 1000; t <= now(); t += step) {
    const s = sample(t);
    const tri = (v: number, d: number): [number, number, number] => [v - d, v, v + d];
    if (!s.tree) { pts.push({ ts_ms: t, cpu: [0, 0, 0], ram: [0, 0, 0], gpu: hasGpu ? [0, 0, 0] : null, vram: hasGpu ? [0, 0, 0] : null }); continue; }
    pts.push({ ts_ms: t, cpu: tri(s.tree!.cpu_percent, 5), ram: tri(s.tree!.ram_bytes, 0.1 * GiB),
      gpu: hasGpu ? tri(s.gpus[0].util_percent!, 2) : null, vram: hasGpu ? tri(s.tree!.vram_bytes!, 0.05 * GiB) : null });
  }
  return pts;
}

function validate(s: Settings): FieldError[] {
  const e: FieldError[] = [];
  const l = s.limits;
  if (l.memory_bytes != null && l.memory_bytes < 64 * 1024 ** 2) e.push({ field: "limits.memory_bytes", value: String(l.memory_bytes), message: "must be at least 64 MiB and at most 1 PiB (or off)" });
  if (l.timeout_s != null && (l.timeout_s < 1 || l.timeout_s > 7 * 86400)) e.push({ field: "limits.timeout_s", value: String(l.timeout_s), message: "must be between 1 s and 168 h (or off)" });
  if (l.cpu_percent != null && l.cpu_percent < 5) e.push({ field: "limits.cpu_percent", value: String(l.cpu_percent), message: "must be between 5 and 102400 percent of one core (100 = one core)" });
  if (s.launch.port < 1 || s.launch.port > 65535) e.push({ field: "launch.port", value: String(s.launch.port), message: "must be between 1 and 65535 (Fooocus uses 7865)" });
  return e;
}

function stats(limit: string, value: number | null) {
  const key = limit === "timeout" ? "duration_s" : limit === "stall" ? "longest_gap_s" : limit === "memory" ? "peak_ram_bytes" : limit === "vram" ? "peak_vram_bytes" : limit === "cpu" ? "peak_cpu_percent" : "peak_swap_bytes";
  const values = gens.filter((g) => g.outcome === "completed").map((g) => (g as unknown as Record<string, number>)[key]).filter((v) => v != null);
  const sorted = [...values].sort((a, b) => a - b);
  const pct = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : null);
  const max = sorted.length ? sorted[sorted.length - 1] : null;
  const step = limit === "timeout" || limit === "stall" ? 60 : limit === "cpu" ? 25 : 256 * 1024 ** 2;
  return { limit, values, p50: pct(50), p95: pct(95), max, would_stop: value == null ? 0 : values.filter((v) => v > value).length,
    suggested: max == null ? null : Math.ceil(Math.max(pct(99)! * 1.5, max * 1.2) / step) * step };
}

// The updates the page has not taken yet, and its ask waiting for them: take_updates as
// src-tauri/src/updates.rs answers it (the newest status, the rest in order, 2 s when idle).
const emptyBatch = (): UpdateBatch => ({ status: null, samples: [], console: [], events: [], open_why: false, dropped: 0 });
let held = emptyBatch();
let waiting: (() => void) | null = null;
function post(u: { status?: Status; sample?: Sample; console?: ConsoleLine[]; event?: GuardEvent }) {
  if (u.status) held.status = structuredClone(u.status);
  if (u.sample) held.samples.push(u.sample);
  if (u.console) held.console.push(...u.console);
  if (u.event) held.events.push(u.event);
  waiting?.();
}
async function takeUpdates(): Promise<UpdateBatch> {
  const idle = held.status == null && !held.samples.length && !held.console.length && !held.events.length;
  if (idle) await new Promise<void>((r) => { waiting = r; setTimeout(r, 2000); });
  waiting = null;
  const b = held;
  held = emptyBatch();
  return b;
}

export function install() {
  mockWindows("main");
  mockIPC((cmd, args) => {
    const a = (args ?? {}) as Record<string, unknown>;
    // Every command the webview may call, checked against the generated list: a command added
    // in Rust fails the type check here until the mock answers it.
    const c = cmd as Granted;
    switch (c) {
      case "get_status": return status;
      case "get_settings": return structuredClone(settings);
      case "validate_settings": return validate(a.settings as Settings);
      case "settings_notes": return [];
      case "save_settings": {
        const s = a.settings as Settings;
        const errors = validate(s);
        if (errors.length) return { saved: false, errors, applied_live: [], needs_restart: [], needs_guard_restart: [] };
        const needs = JSON.stringify(s.launch) !== JSON.stringify(settings.launch) ? ["launch options"] : [];
        const applied = JSON.stringify(s.limits) !== JSON.stringify(settings.limits) ? ["limits"] : [];
        Object.assign(settings, structuredClone(s));
        return { saved: true, errors: [], applied_live: applied, needs_restart: needs, needs_guard_restart: [] };
      }
      case "get_history": return history(Number(a.rangeS ?? 600));
      case "get_console": return consoleLines.filter((l) => a.after == null || l.n > Number(a.after));
      case "get_generations": return gens.filter((g) => !a.outcome || g.outcome === a.outcome).slice(0, Number(a.limit ?? 100));
      case "get_breaches": return breaches;
      case "limit_stats": return stats(String(a.limit), a.value as number | null);
      case "export_history_csv": return "id,started_ms,ended_ms,duration_s,outcome\r\n" + gens.map((g) => `${g.id},${g.started_ms},${g.ended_ms},${g.duration_s},${g.outcome}`).join("\r\n");
      case "detect_installs": return [status.install];
      case "check_install": if (String(a.path).includes("Fooocus")) return status.install; throw `${a.path} is not a Fooocus install: it has no entry_with_update.py`;
      case "pick_folder": return null;
      case "mark_breaches_seen": status.unseen_breach = false; return null;
      case "get_last_stop": return { stopped: null, breach: null };
      case "start_fooocus": case "stop_fooocus": case "restart_fooocus": case "stop_generation": case "open_in_browser": return null;
      case "sleep_fooocus": case "wake_fooocus": return null;
      // Installing Fooocus (views/install.ts): a plan, and no install running.
      case "install_plan": return {
        plan: { target: String(a.path ?? "/home/me/.local/share/fooocus-guard/Fooocus"), version: "2.5.5",
                source: a.source ? { kind: "path", value: String(a.source) } : { kind: "url", value: "https://github.com/lllyasviel/Fooocus/archive/refs/tags/v2.5.5.tar.gz" },
                phases: ["download", "verify", "unpack", "environment", "torch", "requirements", "finish"],
                download_bytes: 3 * 2 ** 30, disk_needed_bytes: 6.1 * 2 ** 30, first_start_bytes: 7 * 2 ** 30 },
        free_bytes: 40 * 2 ** 30, enough_space: true, torch: "cuda", torch_label: "CUDA (NVIDIA)", gpu: "found NVIDIA GeForce RTX 3060", finished: installFinished };
      case "install_status": return { running: false, target: null, phase: null, label: null, index: 0, count: 0, done_bytes: 0,
                                      total_bytes: null, log: [], done: [], error: null, cancelled: false, installed: null };
      case "install_discard": installFinished = []; return null;
      case "install_start": case "install_cancel": return null;
      case "take_updates": return takeUpdates();
      default: {
        const unknown: never = c;
        throw `unknown command ${unknown}`;
      }
    }
  });
  setInterval(() => {
    post({ sample: sample(now()) });
    const g = status.generation;
    if (!g) return;
    g.step = (g.step! % 30) + 1;
    if (g.step === 1) g.image_index = (g.image_index! % 4) + 1;
    g.elapsed_s = (now() - g.started_ms) / 1000;
    post({ status, console: [say(` ${Math.round((g.step / 30) * 100)}%|███       | ${g.step}/30 [00:17<00:07,  2.46s/it]`, "stderr")] });
  }, 500);
  (window as unknown as { mockGuard: unknown }).mockGuard = { stopByLimit };
}

/** What the guard sends when a limit stops the running generation (crates/core events.rs). */
async function stopByLimit(limit: "vram" | "memory" | "timeout" | "cpu", how: "graceful" | "killed" = "graceful") {
  const g = status.generation;
  const id = g?.id ?? null;
  const l = settings.limits;
  const [configured, observed] = limit === "vram" ? [l.vram_bytes!, l.vram_bytes! * 1.06] : limit === "memory" ? [l.memory_bytes!, l.memory_bytes! * 1.02]
    : limit === "cpu" ? [l.cpu_percent!, l.cpu_percent! * 1.1] : [l.timeout_s!, l.timeout_s! + 0.02];
  const ts = new Date().toISOString();
  const action = how === "graceful" ? "stop_generation" : "kill_and_restart";
  breaches.unshift({ id: breaches.length + 1, ts_ms: Date.parse(ts), limit, configured, observed, action, how, generation_id: id });
  post({ event: { ts, event: "limit_breached", limit, configured, observed, action, generation_id: id ?? undefined, source: limit === "vram" ? "tree" : undefined } });
  status.generation = null;
  status.state = "ready";
  status.actions = actionsFor(status.state, !!status.url);
  post({ status });
  post({ event: { ts: new Date().toISOString(), event: "generation_stopped", generation_id: id ?? undefined, how, limit, took_s: how === "graceful" ? 2.4 : 10.3,
    steps: [], grace_s: l.grace_s ?? 10, grace: "configured" } });
}
