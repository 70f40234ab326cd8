// Settings: install, launch options, restart policy, sampling, notifications, metrics,
// gateway, privacy, and the limits -- each beside what past generations actually used.
import { api } from "../ipc";
import { h, clear } from "../dom";
import { durationInput, formatDuration, formatSize, parseDuration, parsePercent, parseSize, sizeInput, type Parsed } from "../units";
import type { FieldError, LimitStats, Settings, SettingsNote } from "../types";
import type { View } from "../main";
import { installPanel } from "./install";
import { LIMIT_QUANTITY, saveSummary, TIMEOUT_COUNTS } from "../logic";

type Kind = "duration" | "size" | "percent";
interface LimitDef { field: keyof Settings["limits"]; label: string; kind: Kind; help: string }
const LIMITS: LimitDef[] = [
  { field: "timeout_s", label: "Generation timeout", kind: "duration", help: `Longest one generation may run. ${TIMEOUT_COUNTS}` },
  { field: "stall_timeout_s", label: "Stall timeout", kind: "duration", help: "No new step or image for this long." },
  { field: "startup_timeout_s", label: "Start-up timeout", kind: "duration", help: "Fooocus must be ready within this." },
  { field: "memory_bytes", label: "RAM cap", kind: "size", help: "The whole Fooocus tree; your PC stays responsive." },
  { field: "swap_bytes", label: "Swap cap", kind: "size", help: "Swap the tree may use on top of its RAM." },
  { field: "vram_bytes", label: "VRAM cap", kind: "size", help: "Checked while a generation runs." },
  { field: "cpu_percent", label: "CPU cap", kind: "percent", help: "Percent of one core: 100 = one core." },
];
const parse = (k: Kind, t: string): Parsed => (k === "duration" ? parseDuration(t) : k === "size" ? parseSize(t) : parsePercent(t));
const show = (k: Kind, v: number | null) => (k === "duration" ? durationInput(v) : k === "size" ? sizeInput(v) : v == null ? "off" : `${v}`);
const human = (k: Kind, v: number | null) => (k === "duration" ? formatDuration(v) : k === "size" ? formatSize(v) : v == null ? "—" : `${v.toFixed(0)} %`);

export function settings(): View {
  let model: Settings | null = null;
  const localErrors = new Map<string, string>();
  const errorEls = new Map<string, HTMLElement>();
  const form = h("form", { class: "settings", novalidate: true });
  const result = h("div", { class: "result", role: "status", id: "save-result" });
  const save = h("button", { type: "submit", class: "primary", id: "save" }, "Save") as HTMLButtonElement;
  let timer: number | undefined;

  const errorSlot = (field: string) => {
    const e = h("div", { class: "field-error", "data-field": field });
    errorEls.set(field, e);
    return e;
  };
  const showErrors = (server: FieldError[]) => {
    for (const [f, el] of errorEls) {
      const msg = localErrors.get(f) ?? server.find((e) => e.field === f)?.message ?? "";
      el.textContent = msg;
      el.closest(".field")?.classList.toggle("invalid", !!msg);
    }
    const unknown = server.filter((e) => !errorEls.has(e.field)).map((e) => `${e.field}: ${e.message}`);
    save.disabled = localErrors.size > 0 || server.length > 0;
    if (unknown.length) result.textContent = unknown.join("; ");
  };
  // Warnings and notes never block the save (a RAM cap below what Fooocus commits at start-up).
  const showNotes = (notes: SettingsNote[]) => {
    for (const [f, el] of errorEls) {
      const n = notes.find((x) => x.field === f);
      let slot = el.nextElementSibling as HTMLElement | null;
      if (!slot?.classList.contains("field-note")) { slot = h("div", { class: "field-note" }); el.after(slot); }
      slot.textContent = n?.message ?? "";
      slot.classList.toggle("warn", n?.kind === "warning");
    }
  };
  const validate = () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(async () => {
      if (!model) return;
      showErrors(localErrors.size ? [] : await api.validate(model));
      showNotes(await api.notes(model).catch(() => []));
    }, 250);
    save.disabled = localErrors.size > 0;
  };
  const text = (label: string, field: string, get: () => string, set: (v: string) => void, extra: Record<string, string> = {}) => {
    const input = h("input", { value: get(), "aria-label": label, name: field, ...extra }) as HTMLInputElement;
    input.addEventListener("input", () => { set(input.value); validate(); });
    return h("label", { class: "field" }, h("span", {}, label), input, errorSlot(field));
  };
  const check = (label: string, field: string, get: () => boolean, set: (v: boolean) => void) => {
    const input = h("input", { type: "checkbox", name: field }) as HTMLInputElement;
    input.checked = get();
    input.addEventListener("change", () => { set(input.checked); validate(); });
    return h("label", { class: "field check" }, input, h("span", {}, label), errorSlot(field));
  };
  const num = (label: string, field: string, get: () => number, set: (v: number) => void) =>
    text(label, field, () => String(get()), (v) => {
      if (/^\d+$/.test(v.trim())) { localErrors.delete(field); set(Number(v)); } else localErrors.set(field, "must be a whole number");
    }, { inputmode: "numeric" });

  const limitRow = (d: LimitDef) => {
    const field = `limits.${d.field}`;
    const chart = h("div", { class: "stats" });
    const input = h("input", { value: show(d.kind, model!.limits[d.field]), name: field, "aria-label": d.label }) as HTMLInputElement;
    const refresh = async () => {
      const q = LIMIT_QUANTITY[d.field];
      if (!q) return;
      const st = await api.limitStats(q.stats, model!.limits[d.field]).catch(() => null);
      renderStats(chart, st, d, model!.limits[d.field], (v) => { input.value = show(d.kind, v); input.dispatchEvent(new Event("input")); });
    };
    input.addEventListener("input", () => {
      const p = parse(d.kind, input.value);
      if (p.ok) { localErrors.delete(field); model!.limits[d.field] = p.value; void refresh(); } else localErrors.set(field, p.error);
      validate();
      showErrors([]);
    });
    void refresh();
    return h("div", { class: "field limit" }, h("span", {}, d.label), input, h("small", { class: "muted" }, d.help), errorSlot(field), chart);
  };

  const render = () => {
    if (!model) return;
    const m = model;
    errorEls.clear();
    const detected = h("select", { "aria-label": "Detected installs" }, h("option", { value: "" }, "Detected installs…")) as HTMLSelectElement;
    void api.detectInstalls().then((list) => list.forEach((i) => detected.append(h("option", { value: i.root }, `${i.root} — ${i.fork} ${i.version ?? ""}`))));
    const installField = text("Fooocus install", "install_path", () => m.install_path ?? "", (v) => (m.install_path = v.trim() || null));
    const installInput = installField.querySelector("input")!;
    detected.addEventListener("change", () => { if (detected.value) { installInput.value = detected.value; installInput.dispatchEvent(new Event("input")); } });
    const browse = h("button", { type: "button", onclick: async () => {
      const p = await api.pickFolder();
      if (p) { installInput.value = p; installInput.dispatchEvent(new Event("input")); }
    } }, "Browse…");
    const listenWarn = h("p", { class: "warn" }, "Listening on the LAN lets anyone on your network use Fooocus and see your images. Set a gateway token.");
    const lan = check("Listen on the LAN", "launch.listen", () => !!m.launch.listen, (v) => { m.launch.listen = v ? "0.0.0.0" : null; listenWarn.hidden = !v; });
    listenWarn.hidden = !m.launch.listen;
    const vram = h("select", { name: "launch.vram_mode", "aria-label": "VRAM mode" }, h("option", { value: "" }, "Fooocus decides"),
      ...["always-gpu", "always-high-vram", "always-normal-vram", "always-low-vram", "always-no-vram", "always-cpu"].map((v) => h("option", { value: v }, v))) as HTMLSelectElement;
    vram.value = m.launch.vram_mode ?? "";
    vram.addEventListener("change", () => { m.launch.vram_mode = vram.value || null; validate(); });
    // Sleep after idle: a duration or off, parsed as the limits are.
    const sleepField = text("Sleep after idle (e.g. 20m; off = never)", "sleep_after_s", () => durationInput(m.sleep_after_s), (v) => {
      const p = parseDuration(v);
      if (p.ok) { localErrors.delete("sleep_after_s"); m.sleep_after_s = p.value; } else localErrors.set("sleep_after_s", p.error);
    });
    const policy = h("select", { name: "restart.policy", "aria-label": "Restart policy" }, ...["never", "on-failure", "always"].map((v) => h("option", { value: v }, v))) as HTMLSelectElement;
    policy.value = m.restart.policy;
    policy.addEventListener("change", () => { m.restart.policy = policy.value as Settings["restart"]["policy"]; validate(); });
    clear(form,
      h("fieldset", {}, h("legend", {}, "Install"), h("div", { class: "row" }, installField, browse, detected),
        h("details", { class: "install-new" }, h("summary", {}, "Install Fooocus…"),
          installPanel(() => api.pickFolder(), async (i) => { installInput.value = i.root; installInput.dispatchEvent(new Event("input")); }))),
      h("fieldset", {}, h("legend", {}, "Limits"), ...LIMITS.map(limitRow)),
      h("fieldset", {}, h("legend", {}, "Launch"),
        text("Preset", "launch.preset", () => m.launch.preset ?? "", (v) => (m.launch.preset = v.trim() || null)),
        h("label", { class: "field" }, h("span", {}, "VRAM mode"), vram, errorSlot("launch.vram_mode")),
        num("Port", "launch.port", () => m.launch.port, (v) => (m.launch.port = v)),
        check("Update Fooocus at every start (entry_with_update.py; it discards changes to its folder)", "launch.auto_update", () => m.launch.auto_update, (v) => (m.launch.auto_update = v)),
        check("Open Fooocus in the browser when it is ready (not after a restart or a wake)", "open_browser", () => m.open_browser, (v) => (m.open_browser = v)),
        lan, listenWarn),
      h("fieldset", {}, h("legend", {}, "Sleep"),
        sleepField,
        h("small", { class: "muted" }, "With no generation and nobody using Fooocus for this long, the guard stops it to give its RAM and VRAM back. "
          + "The next visit to Fooocus's address wakes it (a small page shows while it starts); so do Wake in the tray and here. Needs the gateway.")),
      h("fieldset", {}, h("legend", {}, "Restarts"),
        h("label", { class: "field" }, h("span", {}, "When Fooocus dies"), policy),
        num("Give up after (failures)", "restart.max_restarts", () => m.restart.max_restarts, (v) => (m.restart.max_restarts = v)),
        num("…within (seconds)", "restart.window_s", () => m.restart.window_s, (v) => (m.restart.window_s = v))),
      h("fieldset", {}, h("legend", {}, "Sampling, notifications, metrics"),
        num("Sampling interval (ms)", "sampling_interval_ms", () => m.sampling_interval_ms, (v) => (m.sampling_interval_ms = v)),
        check("Desktop notifications", "notifications.enabled", () => m.notifications.enabled, (v) => (m.notifications.enabled = v)),
        check("Also when Fooocus is ready", "notifications.on_ready", () => m.notifications.on_ready, (v) => (m.notifications.on_ready = v)),
        check("Also when a generation finishes", "notifications.on_finished", () => m.notifications.on_finished, (v) => (m.notifications.on_finished = v)),
        check("Prometheus metrics on 127.0.0.1", "metrics.enabled", () => m.metrics.enabled, (v) => (m.metrics.enabled = v)),
        num("Metrics port", "metrics.port", () => m.metrics.port, (v) => (m.metrics.port = v))),
      h("fieldset", {}, h("legend", {}, "Gateway and privacy"),
        check("Gateway (graceful stop for Fooocus 2.2+)", "gateway.enabled", () => m.gateway.enabled, (v) => (m.gateway.enabled = v)),
        text("Gateway token", "gateway.token", () => m.gateway.token ?? "", (v) => (m.gateway.token = v || null), { type: "password" }),
        text("Other sites allowed to use Fooocus (origins like http://192.168.1.5:3000, comma-separated; any other site's page is refused)",
          "gateway.allowed_origins", () => m.gateway.allowed_origins.join(", "),
          (v) => (m.gateway.allowed_origins = v.split(/[\s,]+/).filter((o) => o !== ""))),
        check("Write Fooocus's console (with your prompts) to the log files", "log_prompts", () => m.log_prompts, (v) => (m.log_prompts = v)),
        check("Start with my session", "start_with_session", () => m.start_with_session, (v) => (m.start_with_session = v))),
      h("div", { class: "row" }, save, result));
    validate();
  };

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!model || localErrors.size) return;
    const r = await api.save(model);
    if (!r.saved) { showErrors(r.errors); result.textContent = "Not saved: fix the fields marked in red."; return; }
    const said = saveSummary(r);
    clear(result, said.now);
    if (said.fooocus) result.append(" ", said.fooocus, " ", h("button", { type: "button", onclick: () => void api.restart() }, "Restart now"));
    if (said.guard) result.append(" ", said.guard);
  });

  return {
    el: h("section", {}, h("h2", {}, "Settings"), form),
    show: async () => { model = await api.settings(); localErrors.clear(); render(); },
  };
}

/** A small histogram of what past generations used, with the limit drawn on it. */
function renderStats(el: HTMLElement, st: LimitStats | null, d: LimitDef, limit: number | null, use: (v: number) => void) {
  if (!st || !st.values.length) { clear(el, h("span", { class: "muted" }, "No finished generations yet to compare with.")); return; }
  const W = 260, H = 46, N = 20;
  const max = Math.max(...st.values, limit ?? 0) * 1.05 || 1;
  const bins = new Array(N).fill(0);
  for (const v of st.values) bins[Math.min(N - 1, Math.floor((v / max) * N))]++;
  const top = Math.max(...bins);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "hist");
  bins.forEach((b, i) => {
    const r = document.createElementNS(svg.namespaceURI, "rect");
    const bh = (b / top) * (H - 4);
    r.setAttribute("x", String((i * W) / N + 1)); r.setAttribute("width", String(W / N - 2));
    r.setAttribute("y", String(H - bh)); r.setAttribute("height", String(bh));
    svg.append(r);
  });
  if (limit != null) {
    const x = (limit / max) * W;
    const l = document.createElementNS(svg.namespaceURI, "line");
    l.setAttribute("x1", String(x)); l.setAttribute("x2", String(x)); l.setAttribute("y1", "0"); l.setAttribute("y2", String(H));
    l.setAttribute("class", "limit-line");
    svg.append(l);
  }
  const n = st.values.length;
  const q = LIMIT_QUANTITY[d.field];
  clear(el, svg,
    h("div", { class: "muted" }, `${q ? `${q.quantity}: ` : ""}p50 ${human(d.kind, st.p50)} · p95 ${human(d.kind, st.p95)} · max ${human(d.kind, st.max)}`),
    h("div", { class: st.would_stop ? "warn" : "muted", "data-would-stop": String(st.would_stop) },
      limit == null ? `${n} past generations` : `Would have stopped ${st.would_stop} of ${n} past generations`),
    st.suggested != null ? h("button", { type: "button", class: "link", onclick: () => use(st.suggested!) }, `Use suggested (${human(d.kind, st.suggested)})`) : null);
}
