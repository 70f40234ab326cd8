// "Install Fooocus" (issue 15): for people without Fooocus yet. Shows what will be downloaded and
// the disk it needs before anything happens, then each phase with its progress, pip's output,
// Cancel, and Retry (which resumes where it stopped). Used by the first-run view and Settings.
import { invoke } from "@tauri-apps/api/core";
import { h } from "../dom";
import type { InstallInfo } from "../types";

export type InstallPhase = "download" | "verify" | "unpack" | "environment" | "torch" | "requirements" | "finish";
export interface InstallPlanView {
  plan: {
    target: string; version: string; source: { kind: string; value: string }; phases: InstallPhase[];
    download_bytes: number; disk_needed_bytes: number; first_start_bytes: number;
  };
  free_bytes: number | null; enough_space: boolean; torch: string; torch_label: string; gpu: string;
  finished: InstallPhase[];
}
export interface InstallJobStatus {
  running: boolean; target: string | null; phase: InstallPhase | null; label: string | null;
  index: number; count: number; done_bytes: number; total_bytes: number | null; log: string[];
  error: string | null; cancelled: boolean; installed: InstallInfo | null;
}

export const installApi = {
  plan: (path: string | null) => invoke<InstallPlanView>("install_plan", { path }),
  start: (path: string) => invoke<null>("install_start", { path }),
  cancel: () => invoke<null>("install_cancel"),
  status: () => invoke<InstallJobStatus>("install_status"),
  discard: (path: string) => invoke<null>("install_discard", { path }),
};

export function bytes(n: number): string {
  const gb = 2 ** 30, mb = 2 ** 20;
  if (n >= gb) return `${(n / gb).toFixed(1)} GB`;
  if (n >= mb) return `${Math.round(n / mb)} MB`;
  return `${Math.ceil(n / 1024)} KB`;
}

/** The text of a job's progress line: "Step 1 of 7: Downloading Fooocus — 120 MB of 2.0 GB (6 %)". */
export function progressText(s: InstallJobStatus): string {
  if (!s.label) return "Starting…";
  const step = `Step ${s.index + 1} of ${s.count}: ${s.label}`;
  if (!s.done_bytes) return step;
  if (s.total_bytes) return `${step} — ${bytes(s.done_bytes)} of ${bytes(s.total_bytes)} (${Math.floor((s.done_bytes * 100) / s.total_bytes)} %)`;
  return `${step} — ${bytes(s.done_bytes)}`;
}

/**
 * The install panel. `pickFolder` asks the user for a folder; `installed` is called with the
 * new install (the caller saves it as the install and starts it).
 */
export function installPanel(pickFolder: () => Promise<string | null>, installed: (i: InstallInfo) => Promise<void>): HTMLElement {
  let target: string | null = null;
  let timer: number | undefined;
  const where = h("code", { id: "install-target" }, "");
  const summary = h("p", { id: "install-summary" });
  const warn = h("div", { class: "error hidden", role: "alert", id: "install-error" });
  const bar = h("progress", { id: "install-progress", max: "100", class: "hidden" }) as HTMLProgressElement;
  const step = h("div", { id: "install-step", "aria-live": "polite" });
  const log = h("pre", { class: "install-log hidden", id: "install-log" });
  const startBtn = h("button", { class: "primary", id: "install-start" }, "Install Fooocus");
  const cancelBtn = h("button", { id: "install-cancel", class: "hidden" }, "Cancel");
  const otherBtn = h("button", { id: "install-folder" }, "Another folder…");
  const fail = (e: unknown) => { warn.textContent = String(e); warn.classList.remove("hidden"); };

  const showPlan = async () => {
    try {
      const v = await installApi.plan(target);
      target = v.plan.target;
      where.textContent = target;
      const resumed = v.finished.length ? ` An earlier attempt got as far as "${v.finished[v.finished.length - 1]}": it resumes from there.` : "";
      summary.textContent =
        `Fooocus ${v.plan.version} from ${v.plan.source.value}. It downloads about ${bytes(v.plan.download_bytes)} now and needs ` +
        `${bytes(v.plan.disk_needed_bytes)} of disk` + (v.free_bytes != null ? ` (${bytes(v.free_bytes)} free)` : "") +
        (v.plan.phases.includes("torch") ? `; torch for ${v.torch_label} (${v.gpu})` : "") +
        `. Its first start then downloads about ${bytes(v.plan.first_start_bytes)} of models.` + resumed;
      (startBtn as HTMLButtonElement).disabled = !v.enough_space;
      startBtn.textContent = v.finished.length ? "Resume the install" : "Install Fooocus";
      if (!v.enough_space) fail(`Not enough free space for Fooocus in ${target}: choose a folder on another disk, or free some space.`);
      else warn.classList.add("hidden");
    } catch (e) { fail(e); }
  };

  const render = async (s: InstallJobStatus) => {
    step.textContent = s.running ? progressText(s) : "";
    bar.classList.toggle("hidden", !s.running);
    if (s.total_bytes) { bar.max = s.total_bytes; bar.value = s.done_bytes; } else bar.removeAttribute("value");
    log.classList.toggle("hidden", !s.log.length);
    log.textContent = s.log.slice(-40).join("\n");
    log.scrollTop = log.scrollHeight;
    startBtn.classList.toggle("hidden", s.running);
    otherBtn.classList.toggle("hidden", s.running);
    cancelBtn.classList.toggle("hidden", !s.running);
    if (s.running) return;
    window.clearInterval(timer);
    timer = undefined;
    if (s.error) { fail(s.error); startBtn.textContent = "Retry"; }
    else if (s.cancelled) { step.textContent = "Cancelled: nothing was installed. Installing again resumes where it stopped."; startBtn.textContent = "Resume the install"; }
    else if (s.installed) { step.textContent = `Fooocus ${s.installed.version ?? ""} is installed in ${s.installed.root}. Starting it…`; await installed(s.installed); }
  };
  const poll = () => { void installApi.status().then(render).catch(fail); };

  startBtn.addEventListener("click", async () => {
    if (!target) return;
    warn.classList.add("hidden");
    try {
      await installApi.start(target);
      if (timer === undefined) timer = window.setInterval(poll, 500);
      poll();
    } catch (e) { fail(e); }
  });
  cancelBtn.addEventListener("click", () => void installApi.cancel().then(poll));
  otherBtn.addEventListener("click", async () => {
    const p = await pickFolder();
    if (p) { target = `${p.replace(/[\\/]+$/, "")}/Fooocus`; await showPlan(); }
  });

  const el = h("div", { class: "install-panel", id: "install-panel" },
    h("h2", {}, "Install Fooocus"),
    h("p", {}, "No Fooocus yet? The guard installs it into ", where, "."),
    summary, h("div", { class: "row" }, startBtn, otherBtn, cancelBtn), bar, step, warn, log);
  void showPlan();
  // An install started before the window opened (or in another view) shows its progress.
  void installApi.status().then((s) => { if (s.running) { target = s.target; timer = window.setInterval(poll, 500); void render(s); } }).catch(() => {});
  return el;
}
