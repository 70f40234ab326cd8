// The IPC contract's types (docs/ipc.md lists the commands and events). The wire types are
// generated from the Rust ones into ./generated/types.ts (src-tauri/src/command.rs, ts-rs; run
// `UPDATE_IPC=1 cargo test -p fooocus-guard --lib` after changing one); the mock backend
// (src/mock) is typed by them. Only the page's own names for parts of them are written here.
export type * from "./generated/types";
import type { GuardEvent, HistoryPoint } from "./generated/types";

/** Full resolution (min = avg = max) or a downsampled bucket: each series is [min, avg, max]. */
export type Triple = HistoryPoint["cpu"];
/** One kind of guard event, by its `event` name. */
export type EventOf<E extends GuardEvent["event"]> = Extract<GuardEvent, { event: E }>;
