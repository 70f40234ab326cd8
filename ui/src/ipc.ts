// Typed wrappers over the app's commands and its updates (docs/ipc.md).
import { invoke } from "@tauri-apps/api/core";
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
  /** "Sleep now" and "Wake" (issue 25: the gateway wakes a sleeping Fooocus on a visit too). */
  sleep: () => invoke<null>("sleep_fooocus"),
  wake: () => invoke<null>("wake_fooocus"),
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

/** One answer to take_updates (src-tauri/src/updates.rs), oldest first in each list. */
export interface UpdateBatch {
  status: Status | null;
  samples: Sample[];
  console: ConsoleLine[];
  events: GuardEvent[];
  open_why: boolean;
  /** Updates the app dropped because the page was not asking (each list has a bound). */
  dropped: number;
}

type Unlisten = () => void;
export interface Handlers {
  status: Set<(s: Status) => void>;
  sample: Set<(s: Sample) => void>;
  console: Set<(l: ConsoleLine[]) => void>;
  event: Set<(e: GuardEvent) => void>;
  openWhy: Set<() => void>;
}
export const newHandlers = (): Handlers =>
  ({ status: new Set(), sample: new Set(), console: new Set(), event: new Set(), openWhy: new Set() });
const handlers = newHandlers();

/** Hands a batch to the views: the status first (what the events that follow it left), then the
 * samples, the console and the events in the guard's order. A view that throws does not keep
 * the others from their updates: its error is reported as uncaught, where tests see it. */
export function deliver(b: UpdateBatch, to: Handlers = handlers): void {
  const call = <T extends unknown[]>(fs: Set<(...a: T) => void>, ...a: T) => {
    for (const f of fs) {
      try {
        f(...a);
      } catch (e) {
        setTimeout(() => { throw e; });
      }
    }
  };
  if (b.status) call(to.status, b.status);
  for (const s of b.samples) call(to.sample, s);
  if (b.console.length) call(to.console, b.console);
  for (const e of b.events) call(to.event, e);
  if (b.open_why) call(to.openWhy);
}

// The page asks for its updates and asks again as soon as they arrive: the app answers when it
// has something (or after 2 s with nothing), so one request is always waiting. Updates are a
// command's reply, plain JSON, rather than Tauri events, which the web process would receive as
// a freshly compiled script each (src-tauri/src/updates.rs says more).
let asking = false;
function ask(): void {
  if (asking) return;
  asking = true;
  void (async () => {
    for (;;) {
      let batch: UpdateBatch;
      try {
        batch = await invoke<UpdateBatch>("take_updates");
      } catch (e) {
        console.warn("take_updates failed, asking again in 1 s:", e);
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      deliver(batch);
    }
  })();
}

function subscribe<F>(set: Set<F>, f: F): Promise<Unlisten> {
  set.add(f);
  ask();
  return Promise.resolve(() => void set.delete(f));
}

export const on = {
  sample: (f: (s: Sample) => void) => subscribe(handlers.sample, f),
  status: (f: (s: Status) => void) => subscribe(handlers.status, f),
  console: (f: (l: ConsoleLine[]) => void) => subscribe(handlers.console, f),
  event: (f: (e: GuardEvent) => void) => subscribe(handlers.event, f),
  /** The user clicked a limit's notification while the window was open. */
  openWhy: (f: () => void) => subscribe(handlers.openWhy, f),
};
