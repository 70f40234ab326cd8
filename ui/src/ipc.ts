// The app's commands under the names the views use, and its updates (docs/ipc.md). The calls
// themselves are generated from the Rust list (src-tauri/src/command_list.rs).
import { commands } from "./generated/commands";
import type { ConsoleLine, GuardEvent, Sample, Status, UpdateBatch } from "./types";

export type { LastStop, UpdateBatch } from "./types";

export const api = {
  status: commands.get_status,
  start: commands.start_fooocus,
  stop: commands.stop_fooocus,
  restart: commands.restart_fooocus,
  stopGeneration: commands.stop_generation,
  /** "Sleep now" and "Wake" (issue 25: the gateway wakes a sleeping Fooocus on a visit too). */
  sleep: commands.sleep_fooocus,
  wake: commands.wake_fooocus,
  openInBrowser: commands.open_in_browser,
  history: commands.get_history,
  console: commands.get_console,
  settings: commands.get_settings,
  validate: commands.validate_settings,
  notes: commands.settings_notes,
  save: commands.save_settings,
  detectInstalls: commands.detect_installs,
  checkInstall: commands.check_install,
  pickFolder: commands.pick_folder,
  generations: commands.get_generations,
  breaches: commands.get_breaches,
  limitStats: commands.limit_stats,
  exportCsv: commands.export_history_csv,
  markSeen: commands.mark_breaches_seen,
  /** The last stop a limit caused and its breach, for a dashboard opened after it. */
  lastStop: commands.get_last_stop,
};

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
        batch = await commands.take_updates();
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
