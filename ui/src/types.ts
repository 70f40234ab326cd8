// The IPC contract's types: the one source (docs/ipc.md lists the commands and events).
// crates/app/tests/ipc_contract.rs checks the JSON the Rust side sends against this file and
// fails on drift; the mock backend (src/mock) is typed by it.
export type FooocusState =
  | "not_configured" | "stopped" | "starting" | "ready" | "generating" | "stopping" | "restarting" | "gave_up"
  | "asleep";

export interface InstallInfo {
  root: string; kind: "portable" | "venv" | "conda" | "interpreter"; python: string; fooocus_dir: string; entry?: string;
  version: string | null; fork: "fooocus" | "mashb1t" | "mre" | "fooocus-api";
}
export interface GenerationProgress {
  id: number; started_ms: number; image_index: number | null; image_total: number | null;
  step: number | null; step_total: number | null; elapsed_s: number; timeout_s: number | null;
  /** The phase of Fooocus's work; null before any is seen. */
  phase: Phase | null;
  /** When the timeout counts from (epoch ms): the first generation after a start does not
   *  count its model loads (`loads_left_out`), and during one (`phase` model_load) nothing. */
  timeout_from_ms: number;
  /** The timeout leaves this generation's model loads out (the first after Fooocus started). */
  loads_left_out: boolean;
}
export type Phase = "model_load" | "preparation" | "sampling" | "decode" | "saving";
/** `url`: where the user's browser opens Fooocus; `gpu_status`: "ok" or why GPU figures are missing;
 *  `unseen_breach`: a limit stopped something and the user has not looked yet. */
export interface Status {
  state: FooocusState; url: string | null; install: InstallInfo | null;
  backend: { kind: "cgroup-v2" | "cgroup-v1" | "fallback" | "job-object"; reason: string; unenforced: string[] } | null;
  gpu_status: string; generation: GenerationProgress | null; unseen_breach: boolean;
  graceful_stop: { available: boolean; why: string }; demo: boolean; restarts: number; pid?: number | null;
  /** What the user may do now: derived once by the guard; the tray and the dashboard render it. */
  actions: Actions;
  /** A model download while Fooocus starts (its first start downloads GBs). */
  download?: { file: string | null; percent: number | null; size: string | null } | null;
  /** The current sleep ("Asleep: wakes when you open Fooocus"), also while it wakes. */
  sleep?: SleepInfo | null;
  /** This session's last sleeps, oldest first (the graphs shade them); woke_ms null: asleep now. */
  sleep_spans?: SleepSpan[];
}
export interface SleepSpan { asleep_ms: number; woke_ms: number | null }
/** A sleep: the machine's RAM and the GPUs' VRAM in use before the stop and after the tree was
 *  gone (the sampler's figures; null: not measured), and what Fooocus's tree itself held. */
export interface SleepInfo {
  since_ms: number; idle_s: number; held_ram_bytes: number | null;
  ram_before_bytes: number | null; ram_after_bytes: number | null;
  vram_before_bytes: number | null; vram_after_bytes: number | null;
  wake_estimate_s: number; waking: boolean; wake_failed: string | null;
}
/** What the user may do in a state (Actions::for_state; the table is src/actions.generated.ts). */
export interface Actions {
  start: boolean; stop: boolean; restart: boolean; open_browser: boolean; stop_generation: boolean;
  /** "Sleep now" (only behind the gateway, which wakes Fooocus on a visit) and "Wake". */
  sleep: boolean; wake: boolean;
}
export interface TreeSample {
  cpu_percent: number; cpu_percent_machine: number; ram_bytes: number; ram_source: "cgroup" | "rss" | "job";
  swap_bytes: number; processes: number; vram_bytes: number | null;
  /** Windows: the memory the job's processes committed, which the RAM cap counts; null elsewhere. */
  commit_bytes?: number | null;
  /** Where the VRAM the cap compares comes from (docs/ipc.md); "device": the whole GPU. */
  vram_source?: "nvml" | "gpu_counters" | "device" | null;
}
export interface Sample {
  ts_ms: number; tree: TreeSample | null;
  system: { cpu_percent: number; ram_used_bytes: number; ram_total_bytes: number };
  gpus: { index: number; name: string; util_percent: number | null; vram_used_bytes: number | null;
          vram_total_bytes: number | null; temperature_c: number | null }[];
  gpu_status: string;
}
export type Triple = [number, number, number];
/** Full resolution (min = avg = max) or a downsampled bucket: each series is [min, avg, max]. */
export interface HistoryPoint { ts_ms: number; cpu: Triple; ram: Triple; gpu: Triple | null; vram: Triple | null }
/** null = off. Sizes in bytes, times in seconds; `grace_s`: how long a graceful stop may take before the kill. */
export interface Limits {
  timeout_s: number | null; stall_timeout_s: number | null; startup_timeout_s: number | null;
  memory_bytes: number | null; swap_bytes: number | null; vram_bytes: number | null; cpu_percent: number | null;
  grace_s: number | null;
}
export interface Settings {
  install_path: string | null; python: string | null;
  launch: { preset: string | null; vram_mode: string | null; port: number; listen: string | null; extra_args: string[]; auto_update: boolean };
  restart: { policy: "never" | "on-failure" | "always"; max_restarts: number; window_s: number };
  limits: Limits; sampling_interval_ms: number;
  notifications: { enabled: boolean; on_ready: boolean; on_finished: boolean };
  metrics: { enabled: boolean; port: number };
  gateway: { enabled: boolean; token: string | null; rate_per_minute: number | null; allowed_origins: string[] };
  log_prompts: boolean; start_with_session: boolean; containment: string; nvml_library: string | null;
  /** "Sleep after idle" in seconds (null: off); the gateway wakes Fooocus on the next visit. */
  sleep_after_s: number | null;
  /** Open Fooocus in the browser once it is ready after a start the user asked for. */
  open_browser: boolean;
}
/** `message` names the problem and the accepted range. */
export interface FieldError { field: string; value: string; message: string }
/** Shown beside a field without blocking the save (Windows: the commit Fooocus reached vs the RAM cap). */
export interface SettingsNote { field: string; kind: "warning" | "note"; message: string }
/** What changed, in the panel's words: in effect now, when Fooocus restarts, when Fooocus Guard restarts. */
export interface SaveResult { saved: boolean; errors: FieldError[]; applied_live: string[]; needs_restart: string[]; needs_guard_restart: string[] }
/** `closed_by`: "task_end" | "next_task" | "process_exit" | "quiet" | "limit". */
export interface GenerationRecord {
  id: number; started_ms: number; ended_ms: number | null; duration_s: number | null; outcome: string;
  closed_by: string | null; images_done: number; images_total: number | null; last_step: number | null;
  steps_total: number | null; peak_ram_bytes: number | null; peak_swap_bytes: number | null;
  peak_vram_bytes: number | null; peak_cpu_percent: number | null; limit: string | null; stop_how: string | null;
  /** JSON array of the escalation's steps with their timings. */
  stop_steps: string | null; fooocus_version: string | null;
  /** Seconds in each phase of Fooocus's work (null: recorded before the guard kept them). */
  model_load_s: number | null; preparation_s: number | null; sampling_s: number | null;
  decode_s: number | null; saving_s: number | null;
  /** Mean seconds per sampling step. */
  step_s: number | null;
  /** The longest time without progress: what the stall limit measures. */
  longest_gap_s: number | null;
}
export interface BreachRecord {
  id: number; ts_ms: number; limit: string; configured: number; observed: number; action: string;
  how: string | null; generation_id: number | null;
}
/** What past generations used: `values` one per completed generation; `would_stop` how many of them
 *  the current or proposed value would have stopped; `suggested` from the history (p99 * 1.5, rounded). */
export interface LimitStats {
  limit: string; values: number[]; p50: number | null; p95: number | null; max: number | null;
  would_stop: number; suggested: number | null;
}
export interface ConsoleLine { n: number; stream: "stdout" | "stderr" | "guard"; text: string }
export interface GuardEvent { ts: string; event: string; [k: string]: unknown }
/** Installing Fooocus (issue 15, views/install.ts). */
export type InstallPhase = "download" | "verify" | "unpack" | "environment" | "torch" | "requirements" | "finish";
export interface InstallPlanView {
  plan: {
    target: string; version: string; source: { kind: string; value: string }; phases: InstallPhase[];
    download_bytes: number; disk_needed_bytes: number; first_start_bytes: number;
  };
  free_bytes: number | null; enough_space: boolean; torch: string; torch_label: string; gpu: string;
  finished: InstallPhase[];
}
/** A step the install under way has finished; `earlier`: an earlier attempt did it. */
export interface InstallStepDone { phase: InstallPhase; label: string; earlier: boolean; seconds: number }
export interface InstallJobStatus {
  running: boolean; target: string | null; phase: InstallPhase | null; label: string | null;
  index: number; count: number; done_bytes: number; total_bytes: number | null; log: string[];
  done: InstallStepDone[]; error: string | null; cancelled: boolean; installed: InstallInfo | null;
}
