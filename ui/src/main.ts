// Fooocus Guard's window: dashboard, history, settings, and a first-run screen.
import "./locale";
import "./style.css";
import { api, on } from "./ipc";
import { h, clear } from "./dom";
import { dashboard } from "./views/dashboard";
import { history } from "./views/history";
import { settings } from "./views/settings";
import { firstRun } from "./views/firstrun";
import type { Status } from "./types";

declare const __MOCK__: boolean;

export interface View { el: HTMLElement; show(): void; hide?(): void; status?(s: Status): void }

async function boot() {
  if (__MOCK__) {
    const m = await import("./mock/backend");
    m.install();
  }
  const root = document.getElementById("app")!;
  const content = h("main", { class: "content" });
  const tabs: Record<string, View> = { dashboard: dashboard(), history: history(), settings: settings() };
  const first = firstRun();
  const nav = h("nav", { class: "nav", "aria-label": "Sections" });
  const badge = h("span", { class: "badge hidden", id: "demo-badge" }, "Demo mode");
  let current = "dashboard";
  const select = (name: string) => {
    current = name;
    for (const b of nav.querySelectorAll("button")) b.classList.toggle("active", b.dataset.tab === name);
    clear(content, tabs[name].el);
    tabs[name].show();
    if (name !== "settings") void api.markSeen();
  };
  for (const [name, label] of [["dashboard", "Dashboard"], ["history", "History"], ["settings", "Settings"]]) {
    const b = h("button", { "data-tab": name, onclick: () => select(name) }, label);
    b.dataset.tab = name;
    nav.append(b);
  }
  root.append(h("header", { class: "top" }, h("div", { class: "brand" }, h("span", { class: "logo" }), "Fooocus Guard"), badge, nav), content);
  const apply = (s: Status) => {
    badge.classList.toggle("hidden", !s.demo);
    for (const v of Object.values(tabs)) v.status?.(s);
    first.status?.(s);
    if (s.state === "not_configured") {
      if (!content.contains(first.el)) {
        clear(content, first.el);
        first.show();
      }
    } else if (content.contains(first.el)) {
      select(current);
    }
  };
  await on.status(apply);
  const s = await api.status();
  select("dashboard");
  apply(s);
}

void boot();
