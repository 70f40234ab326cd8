// Dashboard: live graphs with limits, the current generation, why the last one was stopped,
// Fooocus's status and actions, the containment backend, and the console.
import { api, on } from "../ipc";
import { h, clear } from "../dom";
import { graph, sparkline, type Breach, type Graph, type Series } from "../charts";
import { ConsoleBuffer, mergeLive, pointOf, sleepLine, STATE_LABEL, timeoutBand } from "../logic";
import { generationText, lastMinute, noGpu, ofLimit, StepClock, timeoutElapsed, whyStopped } from "../glance";
import { modelDownload } from "./model-download";
import { formatSize } from "../units";
import type { ConsoleLine, EventOf, HistoryPoint, Settings, Status } from "../types";
import type { View } from "../main";

const RANGES: [string, number][] = [["1 min", 60], ["10 min", 600], ["1 h", 3600], ["6 h", 21600], ["24 h", 86400]];

export function dashboard(): View {
  let range = 600;
  let points: HistoryPoint[] = [];
  let breaches: Breach[] = [];
  let settings: Settings | null = null;
  let status: Status | null = null;
  const graphs: Record<Series, Graph> = {
    cpu: graph("cpu", "CPU (% of one core)"),
    ram: graph("ram", "RAM"),
    gpu: graph("gpu", "GPU utilisation (%)"),
    vram: graph("vram", "VRAM"),
  };
  const limitFor = (k: Series): number | null =>
    !settings ? null : k === "cpu" ? settings.limits.cpu_percent : k === "ram" ? settings.limits.memory_bytes : k === "vram" ? settings.limits.vram_bytes : null;
  const redraw = () => {
    const to = points.length ? points[points.length - 1].ts_ms : Date.now();
    const span: [number, number] = [to - range * 1000, to];
    for (const [k, g] of Object.entries(graphs) as [Series, Graph][]) g.set(points, limitFor(k), breaches, span);
  };
  let lastStopAsked = false;
  const load = async () => {
    settings = await api.settings();
    points = await api.history(range);
    const since = Date.now() - range * 1000;
    breaches = (await api.breaches(200)).filter((b) => b.ts_ms >= since).map((b) => ({ ts_ms: b.ts_ms, limit: b.limit }));
    redraw();
    if (!lastStopAsked) {
      lastStopAsked = true;
      await showLastStop(location.hash === "#why");
    }
  };
  /** A window opened after a limit stopped something still says why: when it was opened for
   *  that (the notification's link, #why), or when it happened in the last ten minutes. */
  const showLastStop = async (wanted: boolean) => {
    const last = await api.lastStop().catch(() => null);
    const stopped = last?.stopped?.event === "generation_stopped" ? last.stopped : null;
    if (stopped && (wanted || Date.now() - Date.parse(stopped.ts) < 10 * 60_000)) {
      lastBreach = last?.breach?.event === "limit_breached" ? last.breach : null;
      showWhy(stopped);
    }
    if (wanted) focusWhy();
  };
  const focusWhy = () => {
    if (!whyEl.classList.contains("hidden")) whyEl.scrollIntoView({ block: "start" });
  };

  const rangeBar = h("div", { class: "segmented", role: "group", "aria-label": "Time range" });
  for (const [label, s] of RANGES) {
    const b = h("button", { onclick: () => { range = s; mark(); void load(); } }, label);
    b.dataset.range = String(s);
    rangeBar.append(b);
  }
  const mark = () => rangeBar.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b.dataset.range === String(range)));
  mark();

  const download = modelDownload();
  // Status card
  const stateEl = h("span", { class: "state", id: "state" });
  const urlEl = h("span", { class: "muted" });
  const backendEl = h("details", { class: "backend" });
  const gpuEl = h("div", { class: "muted" });
  const graceEl = h("div", { class: "muted" });
  const btn = (label: string, f: () => Promise<unknown>, id: string) => h("button", { id, onclick: () => void f().catch(showError) }, label);
  const buttons = {
    start: btn("Start", api.start, "btn-start"),
    stop: btn("Stop", api.stop, "btn-stop"),
    restart: btn("Restart", api.restart, "btn-restart"),
    browser: btn("Open in browser", api.openInBrowser, "btn-browser"),
    stopGeneration: btn("Stop generation", api.stopGeneration, "btn-stop-generation"),
    sleep: btn("Sleep now", api.sleep, "btn-sleep"),
    wake: btn("Wake", api.wake, "btn-wake"),
  };
  // "Asleep: wakes when you open Fooocus", and what the sleep gave back.
  const sleepEl = h("div", { class: "sleep-line hidden", id: "sleep-line", role: "status" });
  const errorEl = h("div", { class: "error hidden", role: "alert" });
  const showError = (e: unknown) => { errorEl.textContent = String(e); errorEl.classList.remove("hidden"); };

  // Generation card
  const genTitle = h("div", { class: "gen-title", id: "gen-title" }, "No generation running");
  const genBar = h("div", { class: "bar" }, h("div", { class: "fill" }));
  const genPace = h("div", { class: "muted", id: "gen-pace" });
  const timeBar = h("div", { class: "bar time" }, h("div", { class: "fill" }));
  const genText = h("div", { class: "muted", id: "gen-text" });
  const clock = new StepClock();

  // Without a GPU, a plain panel instead of two empty graphs.
  const noGpuPanel = h("div", { class: "graph no-gpu hidden", id: "no-gpu" },
    h("div", { class: "no-gpu-title" }, "No NVIDIA or AMD GPU found: VRAM limits are off"),
    h("div", { class: "muted no-gpu-why" }));

  // "Why it stopped": filled when a limit stops a generation, until dismissed.
  const whyEl = h("section", { class: "card why-card hidden", id: "why-card", role: "status" });
  let lastBreach: EventOf<"limit_breached"> | null = null;
  const showWhy = (stopped: EventOf<"generation_stopped">) => {
    const w = whyStopped(stopped, lastBreach, settings);
    const minute = lastMinute(points, w.atMs);
    const lim = { ram: settings?.limits.memory_bytes ?? null, vram: settings?.limits.vram_bytes ?? null, cpu: settings?.limits.cpu_percent ?? null };
    const peak = (k: "ram" | "vram" | "cpu") => {
      const v = minute.map((p) => p[k]?.[2]).filter((x): x is number => x != null);
      return v.length ? ofLimit(k, Math.max(...v), lim[k]) : null;
    };
    const peaks = ([["RAM", "ram"], ["VRAM", "vram"], ["CPU", "cpu"]] as const)
      .map(([name, k]) => [name, k, peak(k)] as const).filter(([, , v]) => v != null);
    whyEl.dataset.limit = w.limit;
    clear(whyEl,
      h("div", { class: "row between" },
        h("h2", {}, stopped.generation_id != null ? `Why generation ${stopped.generation_id} stopped` : "Why the generation stopped"),
        h("button", { class: "link", id: "why-dismiss", onclick: () => whyEl.classList.add("hidden") }, "Dismiss")),
      h("p", { class: "why-headline" }, w.headline),
      h("div", { class: "why-minute" },
        h("div", { class: "label muted" }, minute.length >= 2 ? "The last minute before it (peak, against the limit):" : "No samples from the minute before it"),
        minute.length >= 2 ? sparkline(minute, lim) : null,
        h("div", { class: "spark-legend" }, ...peaks.map(([name, k, v]) => h("span", { "data-series": k }, `${name} ${v}`)))),
      h("p", { class: "why-did" }, h("b", {}, "What the guard did: "), w.did),
      h("p", { class: "why-suggestion" }, h("b", {}, "Try: "), w.suggestion));
    whyEl.classList.remove("hidden");
  };

  // Console
  const buffer = new ConsoleBuffer(5000);
  const consoleEl = h("pre", { class: "console", id: "console", tabindex: "0", "aria-label": "Fooocus console" });
  const search = h("input", { type: "search", placeholder: "Search the console", "aria-label": "Search the console", id: "console-search" }) as HTMLInputElement;
  // At most CONSOLE_SHOWN lines in the page. New lines are appended and the oldest removed, so
  // a busy console costs the web view a few nodes per update instead of a rebuild of all of them
  // (each rebuild left 1,500 nodes of garbage behind); a search redraws what matches.
  // 500, not 1,500: a full console of 1,500 lines held the web process about 4 MiB more
  // (tests/app/footprint.sh --hold); the buffer's 5,000 lines stay searchable.
  const CONSOLE_SHOWN = 500;
  const lineEl = (l: ConsoleLine) => h("div", { class: `line ${l.stream}` }, l.text || " ");
  const renderConsole = () => {
    const frag = document.createDocumentFragment();
    for (const l of buffer.search(search.value).slice(-CONSOLE_SHOWN)) frag.append(lineEl(l));
    consoleEl.replaceChildren(frag);
    consoleEl.scrollTop = consoleEl.scrollHeight;
  };
  const addConsole = (batch: ConsoleLine[]) => {
    const last = buffer.lastN();
    buffer.push(batch);
    if (search.value.trim()) { renderConsole(); return; }
    const fresh = batch.filter((l) => last == null || l.n > last).slice(-CONSOLE_SHOWN);
    if (!fresh.length) return;
    const frag = document.createDocumentFragment();
    for (const l of fresh) frag.append(lineEl(l));
    consoleEl.append(frag);
    for (let extra = consoleEl.childElementCount - CONSOLE_SHOWN; extra > 0; extra--) consoleEl.firstElementChild?.remove();
    consoleEl.scrollTop = consoleEl.scrollHeight;
  };
  search.addEventListener("input", renderConsole);
  const copy = h("button", { onclick: () => void navigator.clipboard?.writeText(buffer.search(search.value).map((l) => l.text).join("\n")) }, "Copy");

  const el = h(
    "section",
    { class: "dashboard" },
    h("div", { class: "cards" },
      h("div", { class: "card status-card" },
        h("div", { class: "row" }, h("h2", {}, "Fooocus"), stateEl),
        urlEl,
        sleepEl,
        h("div", { class: "actions" }, ...Object.values(buttons)),
        errorEl, backendEl, gpuEl, graceEl),
      h("div", { class: "card gen-card" }, h("h2", {}, "Current generation"), genTitle, genBar, genPace, h("div", { class: "label muted" }, "Time against the timeout"), timeBar, genText)),
    download.el,
    whyEl,
    h("div", { class: "row between" }, h("h2", {}, "Resources"), rangeBar),
    h("div", { class: "graphs" }, ...Object.values(graphs).map((g) => g.el), noGpuPanel),
    h("div", { class: "row between" }, h("h2", {}, "Console"), h("div", { class: "row" }, search, copy)),
    consoleEl,
  );

  const applyStatus = (s: Status) => {
    status = s;
    download.status(s);
    stateEl.textContent = STATE_LABEL[s.state];
    stateEl.className = `state ${s.state}`;
    urlEl.textContent = s.url ? `Listening on ${s.url}` : "";
    // The guard derives what a state allows; the tray renders the same.
    const a = { start: s.actions.start, stop: s.actions.stop, restart: s.actions.restart, browser: s.actions.open_browser, stopGeneration: s.actions.stop_generation,
      sleep: s.actions.sleep, wake: s.actions.wake };
    // Sleep now and Wake only where they can apply: the gateway is on (sleep) or Fooocus sleeps.
    (buttons.sleep as HTMLElement).classList.toggle("hidden", !s.actions.sleep);
    (buttons.wake as HTMLElement).classList.toggle("hidden", !s.actions.wake);
    const asleep = s.state === "asleep" || !!s.sleep?.waking;
    sleepEl.classList.toggle("hidden", !(asleep && s.sleep));
    sleepEl.textContent = asleep && s.sleep ? sleepLine(s.sleep) : "";
    if (asleep && !s.sleep) { sleepEl.classList.remove("hidden"); sleepEl.textContent = "Asleep: wakes when you open Fooocus"; }
    const spans = (s.sleep_spans ?? []).map((p) => [p.asleep_ms, p.woke_ms] as [number, number | null]);
    Object.values(graphs).forEach((g) => g.sleeps(spans));
    (Object.keys(buttons) as (keyof typeof buttons)[]).forEach((k) => ((buttons[k] as HTMLButtonElement).disabled = !a[k]));
    // Status arrives with every step of a generation; the containment rarely changes.
    const backendKey = JSON.stringify(s.backend ?? null);
    if (backendEl.dataset.key !== backendKey) {
      backendEl.dataset.key = backendKey;
      clear(backendEl, h("summary", {}, `Containment: ${s.backend?.kind ?? "—"}`), h("p", {}, s.backend?.reason ?? "Fooocus is not running"),
        s.backend?.unenforced.length ? h("p", { class: "warn" }, `Not enforced by the OS: ${s.backend.unenforced.join(", ")} (the guard's watchdog covers RAM)`) : null);
    }
    gpuEl.textContent = `GPU: ${s.gpu_status}`;
    const none = noGpu(s.gpu_status);
    graphs.gpu.el.classList.toggle("hidden", none);
    graphs.vram.el.classList.toggle("hidden", none);
    noGpuPanel.classList.toggle("hidden", !none);
    graphs.gpu.flush();
    graphs.vram.flush();
    (noGpuPanel.lastElementChild as HTMLElement).textContent = none ? `The GPU sampler says: ${s.gpu_status}. RAM, CPU and time limits still apply.` : "";
    clock.observe(s.generation, Date.now());
    graceEl.textContent = s.graceful_stop.available ? "Graceful stop: available" : `Graceful stop: unavailable — ${s.graceful_stop.why}`;
    renderGeneration();
  };
  // When the dashboard saw the current model load begin: the timeout holds from there.
  let loadSeen: { id: number; at: number } | null = null;
  const renderGeneration = () => {
    const g = status?.generation;
    if (g?.phase !== "model_load") loadSeen = null;
    else if (loadSeen?.id !== g.id) loadSeen = { id: g.id, at: Date.now() };
    const fill = (bar: HTMLElement, f: number, band = "ok") => {
      const d = bar.firstElementChild as HTMLElement;
      d.style.width = `${(f * 100).toFixed(1)}%`;
      bar.dataset.band = band;
    };
    if (!g) {
      genTitle.textContent = "No generation running";
      genText.textContent = "";
      genPace.textContent = "";
      fill(genBar, 0);
      fill(timeBar, 0);
      return;
    }
    const elapsed = timeoutElapsed(g, Date.now(), loadSeen?.at ?? null);
    const text = generationText(g, elapsed, clock.perStep());
    genTitle.textContent = text.title;
    genPace.textContent = text.pace;
    const done = g.image_total ? ((g.image_index ?? 1) - 1 + (g.step && g.step_total ? g.step / g.step_total : 0)) / g.image_total : 0;
    fill(genBar, Math.max(0, Math.min(1, done)));
    const t = timeoutBand(elapsed, g.timeout_s);
    fill(timeBar, t.fraction, t.band);
    genText.textContent = text.timeLeft;
    genText.classList.toggle("warn", text.timeoutNear);
  };
  setInterval(() => el.isConnected && renderGeneration(), 1000);

  void on.sample((s) => {
    const live = mergeLive(points, [pointOf(s)], range, s.ts_ms);
    points = live;
    if (range <= 3600) redraw();
    el.dataset.samples = String(Number(el.dataset.samples ?? 0) + 1);
    el.dataset.lastRam = formatSize(s.tree?.ram_bytes ?? null);
  });
  void on.console(addConsole);
  void on.event((e) => {
    if (e.event === "limit_breached") {
      lastBreach = e;
      breaches.push({ ts_ms: Date.parse(e.ts), limit: String(e.limit) });
      redraw();
    } else if (e.event === "generation_stopped" && e.limit != null) {
      showWhy(e);
    }
  }).then(() => (el.dataset.listening = "true"));
  void on.openWhy(() => {
    lastStopAsked = true;
    void showLastStop(true);
  });
  void api.console(null, null).then(addConsole);
  const ro = new ResizeObserver(() => {
    const w = Math.max(280, Math.floor((el.clientWidth - 24) / 2) - 4);
    Object.values(graphs).forEach((g) => g.resize(w));
  });
  ro.observe(el);

  return {
    el,
    show: () => {
      Object.values(graphs).forEach((g) => g.flush());
      void load();
    },
    status: applyStatus,
  };
}
