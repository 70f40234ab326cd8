// Generated from src-tauri/src/command_list.rs by src-tauri/src/command.rs: do not edit.
// (UPDATE_IPC=1 cargo test -p fooocus-guard --lib rewrites it; the test fails while it is stale.)
import { invoke } from "@tauri-apps/api/core";
import type { BreachRecord, ConsoleLine, FieldError, GenerationRecord, HistoryPoint, InstallInfo, InstallJobStatus, InstallPlanView, LastStop, LimitStats, SaveResult, Settings, SettingsNote, Status, UpdateBatch } from "./types";

/** The commands the webview may call (capabilities/default.json). */
export type Granted =
  | "get_status"
  | "start_fooocus"
  | "stop_fooocus"
  | "restart_fooocus"
  | "stop_generation"
  | "sleep_fooocus"
  | "wake_fooocus"
  | "open_in_browser"
  | "get_history"
  | "get_console"
  | "get_settings"
  | "validate_settings"
  | "settings_notes"
  | "save_settings"
  | "detect_installs"
  | "check_install"
  | "get_generations"
  | "get_breaches"
  | "limit_stats"
  | "export_history_csv"
  | "mark_breaches_seen"
  | "get_last_stop"
  | "install_plan"
  | "install_start"
  | "install_cancel"
  | "install_status"
  | "install_discard"
  | "pick_folder"
  | "take_updates";

/** Each command's call: its arguments by their Rust names, its reply. */
export const commands = {
  get_status: () => invoke<Status>("get_status"),
  start_fooocus: () => invoke<null>("start_fooocus"),
  stop_fooocus: () => invoke<null>("stop_fooocus"),
  restart_fooocus: () => invoke<null>("restart_fooocus"),
  stop_generation: () => invoke<null>("stop_generation"),
  /** "Sleep now": stop Fooocus to give its memory back; the gateway wakes it on a visit. */
  sleep_fooocus: () => invoke<null>("sleep_fooocus"),
  wake_fooocus: () => invoke<null>("wake_fooocus"),
  open_in_browser: () => invoke<null>("open_in_browser"),
  get_history: (range_s: number) => invoke<Array<HistoryPoint>>("get_history", { rangeS: range_s }),
  get_console: (after: number | null, query: string | null) => invoke<Array<ConsoleLine>>("get_console", { after, query }),
  get_settings: () => invoke<Settings>("get_settings"),
  validate_settings: (settings: Settings) => invoke<Array<FieldError>>("validate_settings", { settings }),
  /** Shown beside the fields without blocking the save: on Windows, the commit Fooocus reached at its last start beside the RAM cap, and a warning when the cap is below it. */
  settings_notes: (settings: Settings) => invoke<Array<SettingsNote>>("settings_notes", { settings }),
  save_settings: (settings: Settings) => invoke<SaveResult>("save_settings", { settings }),
  detect_installs: () => invoke<Array<InstallInfo>>("detect_installs"),
  check_install: (path: string) => invoke<InstallInfo>("check_install", { path }),
  get_generations: (outcome: string | null, limit: number) => invoke<Array<GenerationRecord>>("get_generations", { outcome, limit }),
  get_breaches: (limit: number) => invoke<Array<BreachRecord>>("get_breaches", { limit }),
  limit_stats: (limit: string, value: number | null) => invoke<LimitStats>("limit_stats", { limit, value }),
  export_history_csv: () => invoke<string>("export_history_csv"),
  mark_breaches_seen: () => invoke<null>("mark_breaches_seen"),
  /** The last stop a limit caused and its breach, for a dashboard opened after it. */
  get_last_stop: () => invoke<LastStop>("get_last_stop"),
  /** What an install into `path` (the default folder when None) downloads and needs; `source`: an archive the user already has (a file or URL) instead of the release's. */
  install_plan: (path: string | null, source: string | null) => invoke<InstallPlanView>("install_plan", { path, source }),
  install_start: (path: string, source: string | null) => invoke<null>("install_start", { path, source }),
  install_cancel: () => invoke<null>("install_cancel"),
  install_status: () => invoke<InstallJobStatus>("install_status"),
  install_discard: (path: string) => invoke<null>("install_discard", { path }),
  /** The native folder dialog (a dialog belongs to the window). */
  pick_folder: () => invoke<string | null>("pick_folder"),
  /** The guard's updates since the page last asked, once there are any (src/updates.rs). */
  take_updates: () => invoke<UpdateBatch>("take_updates"),
};
