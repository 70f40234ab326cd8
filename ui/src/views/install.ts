// "Install Fooocus" (issue 15): for people without Fooocus yet. Shows what will be downloaded and
// the disk it needs before anything happens, then each phase with its progress, pip's output,
// Cancel, Retry (which resumes where it stopped) and Discard (which deletes what an earlier attempt
// left, so the next one starts over). Used by the first-run view and Settings.
import { commands } from "../generated/commands";
import { h } from "../dom";
import type { InstallInfo, InstallJobStatus, InstallStepDone } from "../types";

export type { InstallJobStatus, InstallPhase, InstallPlanView, InstallStepDone } from "../types";

export const installApi = {
  plan: commands.install_plan,
  start: commands.install_start,
  cancel: commands.install_cancel,
  status: commands.install_status,
  discard: commands.install_discard,
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

/** A finished step as the checklist shows it: "✓ Unpacking Fooocus (4 s)". */
export function doneText(d: InstallStepDone): string {
  if (d.earlier) return `✓ ${d.label} (done before)`;
  const t = d.seconds < 1 ? "under a second" : d.seconds < 90 ? `${Math.round(d.seconds)} s` : `${Math.round(d.seconds / 60)} min`;
  return `✓ ${d.label} (${t})`;
}

/**
 * The install panel. `pickFolder` asks the user for a folder; `installed` is called with the
 * new install (the caller saves it as the install and starts it).
 */
export function installPanel(pickFolder: () => Promise<string | null>, installed: (i: InstallInfo) => Promise<void>): HTMLElement {
  let target: string | null = null;
  // An archive the user already downloaded (a file or URL); the release's own when null.
  let source: string | null = null;
  let timer: number | undefined;
  const where = h("code", { id: "install-target" }, "");
  const summary = h("p", { id: "install-summary" });
  const warn = h("div", { class: "error hidden", role: "alert", id: "install-problem" });
  const bar = h("progress", { id: "install-progress", max: "100", class: "hidden" }) as HTMLProgressElement;
  const step = h("div", { id: "install-step", "aria-live": "polite" });
  // Every finished step stays listed: a fast one (a local archive unpacks in a blink) is seen
  // done, and after a failure the list shows how far it got.
  const doneList = h("ul", { id: "install-done", class: "install-done hidden" });
  const log = h("pre", { class: "install-log hidden", id: "install-log" });
  const startBtn = h("button", { class: "primary", id: "install-start" }, "Install Fooocus");
  const cancelBtn = h("button", { id: "install-cancel", class: "hidden" }, "Cancel");
  const otherBtn = h("button", { id: "install-folder" }, "Another folder…");
  // Deletes GBs a retry would reuse: the first click asks, the second deletes.
  const discardBtn = h("button", { id: "install-discard", class: "hidden" }, "Discard the download");
  let staged = false;
  const showDiscard = (on: boolean) => {
    staged = on;
    discardBtn.classList.toggle("hidden", !on);
    discardBtn.textContent = "Discard the download";
    delete discardBtn.dataset.confirm;
  };
  const fail = (e: unknown) => { warn.textContent = String(e); warn.classList.remove("hidden"); };

  const showPlan = async () => {
    try {
      const v = await installApi.plan(target, source);
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
      showDiscard(v.finished.length > 0);
      if (!v.enough_space) fail(`Not enough free space for Fooocus in ${target}: choose a folder on another disk, or free some space.`);
      else warn.classList.add("hidden");
    } catch (e) { fail(e); }
  };

  const render = async (s: InstallJobStatus) => {
    step.textContent = s.running ? progressText(s) : "";
    doneList.replaceChildren(...s.done.map((d) => h("li", { "data-phase": d.phase }, doneText(d))));
    doneList.classList.toggle("hidden", !s.done.length);
    bar.classList.toggle("hidden", !s.running);
    if (s.total_bytes) { bar.max = s.total_bytes; bar.value = s.done_bytes; } else bar.removeAttribute("value");
    log.classList.toggle("hidden", !s.log.length);
    log.textContent = s.log.slice(-40).join("\n");
    log.scrollTop = log.scrollHeight;
    startBtn.classList.toggle("hidden", s.running);
    otherBtn.classList.toggle("hidden", s.running);
    cancelBtn.classList.toggle("hidden", !s.running);
    discardBtn.classList.toggle("hidden", s.running || !(staged || s.error || s.cancelled));
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
      await installApi.start(target, source);
      if (timer === undefined) timer = window.setInterval(poll, 500);
      poll();
    } catch (e) { fail(e); }
  });
  cancelBtn.addEventListener("click", () => void installApi.cancel().then(poll));
  discardBtn.addEventListener("click", async () => {
    if (!target) return;
    if (!discardBtn.dataset.confirm) {
      discardBtn.dataset.confirm = "1";
      discardBtn.textContent = "Delete it? Click again";
      return;
    }
    try {
      await installApi.discard(target);
      warn.classList.add("hidden");
      step.textContent = "The download was deleted: installing starts over.";
      await showPlan();
    } catch (e) { fail(e); }
  });
  otherBtn.addEventListener("click", async () => {
    const p = await pickFolder();
    if (p) { target = `${p.replace(/[\\/]+$/, "")}/Fooocus`; await showPlan(); }
  });

  // People often have the package already (the 2 GB .7z from upstream's README, or a source
  // .tar.gz): installing from it saves the download.
  const sourceInput = h("input", { id: "install-source", type: "text", size: "60",
    placeholder: "/home/you/Downloads/Fooocus_win64_2-5-0.7z, or a URL" }) as HTMLInputElement;
  const sourceBtn = h("button", { id: "install-source-use" }, "Use it");
  sourceBtn.addEventListener("click", async () => { source = sourceInput.value.trim() || null; await showPlan(); });
  const own = h("details", { id: "install-own" }, h("summary", {}, "Already downloaded Fooocus? Install from that file"),
    h("div", { class: "row" }, sourceInput, sourceBtn));

  const el = h("div", { class: "install-panel", id: "install-panel" },
    h("h2", {}, "Install Fooocus"),
    h("p", {}, "No Fooocus yet? The guard installs it into ", where, "."),
    summary, own, h("div", { class: "row" }, startBtn, otherBtn, cancelBtn, discardBtn), doneList, bar, step, warn, log);
  void showPlan();
  // An install started before the window opened (or in another view) shows its progress.
  void installApi.status().then((s) => { if (s.running) { target = s.target; timer = window.setInterval(poll, 500); void render(s); } }).catch(() => {});
  return el;
}
