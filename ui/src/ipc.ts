// Typed wrappers over the app's commands and events (docs/ipc.md).
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  BreachRecord, ConsoleLine, FieldError, GenerationRecord, GuardEvent, HistoryPoint, InstallInfo, LimitStats,
  Sample, SaveResult, Settings, SettingsNote, Status,
} from "./types";

export const api = {
  status: () => invoke<Status>("get_status"),
  start: () => invoke<null>("start_fooocus"),
  stop: () => invoke<null>("stop_fooocus"),
  restart: () => invoke<null>("restart_fooocus"),
  stopGeneration: () => invoke<null>("stop_generation"),
  openInBrowser: () => invoke<null>("open_in_browser"),
  history: (range_s: number) => invoke<HistoryPoint[]>("get_history", { rangeS: range_s }),
  console: (after: number | null, query: string | null) => invoke<ConsoleLine[]>("get_console", { after, query }),
  settings: () => invoke<Settings>("get_settings"),
  validate: (settings: Settings) => invoke<FieldError[]>("validate_settings", { settings }),
  notes: (settings: Settings) => invoke<SettingsNote[]>("settings_notes", { settings }),
  save: (settings: Settings) => invoke<SaveResult>("save_settings", { settings }),
  detectInstalls: () => invoke<InstallInfo[]>("detect_installs"),
  checkInstall: (path: string) => invoke<InstallInfo>("check_install", { path }),
  pickFolder: () => invoke<string | null>("pick_folder"),
  generations: (outcome: string | null, limit: number) => invoke<GenerationRecord[]>("get_generations", { outcome, limit }),
  breaches: (limit: number) => invoke<BreachRecord[]>("get_breaches", { limit }),
  limitStats: (limit: string, value: number | null) => invoke<LimitStats>("limit_stats", { limit, value }),
  exportCsv: () => invoke<string>("export_history_csv"),
  markSeen: () => invoke<null>("mark_breaches_seen"),
  /** The last stop a limit caused and its breach, for a dashboard opened after it. */
  lastStop: () => invoke<LastStop>("get_last_stop"),
};

export interface LastStop { stopped: GuardEvent | null; breach: GuardEvent | null }

export const on = {
  sample: (f: (s: Sample) => void): Promise<UnlistenFn> => listen<Sample>("sample", (e) => f(e.payload)),
  status: (f: (s: Status) => void): Promise<UnlistenFn> => listen<Status>("status", (e) => f(e.payload)),
  console: (f: (l: ConsoleLine[]) => void): Promise<UnlistenFn> => listen<ConsoleLine[]>("console", (e) => f(e.payload)),
  event: (f: (e: GuardEvent) => void): Promise<UnlistenFn> => listen<GuardEvent>("guard-event", (e) => f(e.payload)),
  /** The user clicked a limit's notification while the window was open. */
  openWhy: (f: () => void): Promise<UnlistenFn> => listen("open-why", () => f()),
};
