// The IPC contract's types (docs/ipc.md).
export type FooocusState =
  | "not_configured" | "stopped" | "starting" | "ready" | "generating" | "stopping" | "restarting" | "gave_up";

export interface InstallInfo {
  root: string; kind: string; python: string; fooocus_dir: string; entry?: string;
  version: string | null; fork: string;
}
export interface GenerationProgress {
  id: number; started_ms: number; image_index: number | null; image_total: number | null;
  step: number | null; step_total: number | null; elapsed_s: number; timeout_s: number | null;
}
export interface Status {
  state: FooocusState; url: string | null; install: InstallInfo | null;
  backend: { kind: string; reason: string; unenforced: string[] } | null;
  gpu_status: string; generation: GenerationProgress | null; unseen_breach: boolean;
  graceful_stop: { available: boolean; why: string }; demo: boolean; restarts: number; pid?: number | null;
  /** What the user may do now: derived once by the guard; the tray and the dashboard render it. */
  actions: { start: boolean; stop: boolean; restart: boolean; open_browser: boolean; stop_generation: boolean };
}
export interface TreeSample {
  cpu_percent: number; cpu_percent_machine: number; ram_bytes: number; ram_source: string;
  swap_bytes: number; processes: number; vram_bytes: number | null;
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
export interface HistoryPoint { ts_ms: number; cpu: Triple; ram: Triple; gpu: Triple | null; vram: Triple | null }
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
  gateway: { enabled: boolean; token: string | null; rate_per_minute: number | null };
  log_prompts: boolean; start_with_session: boolean; containment: string; nvml_library: string | null;
}
export interface FieldError { field: string; value: string; message: string }
/** Shown beside a field without blocking the save (Windows: the commit Fooocus reached vs the RAM cap). */
export interface SettingsNote { field: string; kind: "warning" | "note"; message: string }
export interface SaveResult { saved: boolean; errors: FieldError[]; applied_live: string[]; needs_restart: string[] }
export interface GenerationRecord {
  id: number; started_ms: number; ended_ms: number | null; duration_s: number | null; outcome: string;
  closed_by: string | null; images_done: number; images_total: number | null; last_step: number | null;
  steps_total: number | null; peak_ram_bytes: number | null; peak_swap_bytes: number | null;
  peak_vram_bytes: number | null; peak_cpu_percent: number | null; limit: string | null; stop_how: string | null;
}
export interface BreachRecord {
  id: number; ts_ms: number; limit: string; configured: number; observed: number; action: string;
  how: string | null; generation_id: number | null;
}
export interface LimitStats {
  limit: string; values: number[]; p50: number | null; p95: number | null; max: number | null;
  would_stop: number; suggested: number | null;
}
export interface ConsoleLine { n: number; stream: "stdout" | "stderr" | "guard"; text: string }
export interface GuardEvent { ts: string; event: string; [k: string]: unknown }
