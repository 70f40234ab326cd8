// First run: no install configured. Offer what was detected, a folder picker, and the demo.
import { api } from "../ipc";
import { h, clear } from "../dom";
import type { View } from "../main";
import type { Status } from "../types";
import { installPanel } from "./install";

export function firstRun(): View {
  const list = h("ul", { class: "installs" });
  const err = h("div", { class: "error hidden", role: "alert", id: "install-error" });
  const use = async (path: string) => {
    try {
      const info = await api.checkInstall(path);
      const s = await api.settings();
      // The first run suggests sleeping after 20 min idle (the CLI keeps it off): Fooocus gives
      // its RAM and VRAM back while unused and wakes on the next visit. Settings can turn it off.
      if (s.install_path == null && s.sleep_after_s == null && s.gateway.enabled) s.sleep_after_s = 20 * 60;
      s.install_path = info.root;
      const r = await api.save(s);
      if (!r.saved) throw new Error(r.errors.map((e) => e.message).join("; "));
      await api.start();
    } catch (e) {
      err.textContent = String(e);
      err.classList.remove("hidden");
    }
  };
  const el = h("section", { class: "first-run" },
    h("h1", {}, "Let's find Fooocus"),
    h("p", {}, "Fooocus Guard starts Fooocus for you, keeps a runaway generation from freezing your PC, and shows what your GPU is doing. No Fooocus install is set up yet."),
    list,
    h("div", { class: "row" },
      h("button", { class: "primary", id: "choose-folder", onclick: async () => { const p = await api.pickFolder(); if (p) await use(p); } }, "Use an existing install…")),
    err,
    installPanel(() => api.pickFolder(), (i) => use(i.root)),
    h("p", { class: "muted", id: "sleep-hint" }, "Fooocus will sleep after 20 minutes without use, giving its memory back, and wake when you open it again (Settings › Sleep)."),
    h("p", { class: "muted", id: "demo-hint" }, "Just looking? Start the app with --demo to watch it supervise a simulated Fooocus."));
  const load = async () => {
    const found = await api.detectInstalls();
    clear(list, ...found.map((i) => h("li", {}, h("button", { onclick: () => void use(i.root) }, `Use ${i.root}`), h("span", { class: "muted" }, ` Fooocus ${i.version ?? ""} (${i.fork})`))));
    if (!found.length) list.append(h("li", { class: "muted" }, "No install found in your home, Downloads, Desktop or Documents folders."));
  };
  return { el, show: () => void load(), status: (s: Status) => el.querySelector("#demo-hint")?.classList.toggle("hidden", s.demo) };
}
