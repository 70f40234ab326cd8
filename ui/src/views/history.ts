// History: generations and limit events, filterable, exportable to CSV.
import { api } from "../ipc";
import { h, clear } from "../dom";
import { formatDuration, formatSize } from "../units";
import type { View } from "../main";

const OUTCOMES = ["all", "completed", "stopped", "skipped", "failed", "out_of_memory", "timed_out", "stalled", "killed", "crashed"];

export function history(): View {
  const filter = h("select", { id: "outcome-filter", "aria-label": "Outcome" }, ...OUTCOMES.map((o) => h("option", { value: o }, o.replace(/_/g, " ")))) as HTMLSelectElement;
  const gens = h("tbody");
  const breaches = h("tbody");
  const load = async () => {
    const rows = await api.generations(filter.value === "all" ? null : filter.value, 500);
    clear(gens, ...rows.map((g) => h("tr", {},
      h("td", {}, new Date(g.started_ms).toLocaleString()),
      h("td", {}, formatDuration(g.duration_s)),
      h("td", {}, `${g.images_done}${g.images_total ? ` / ${g.images_total}` : ""}`),
      h("td", {}, h("span", { class: `chip ${g.outcome}` }, g.outcome.replace(/_/g, " "))),
      h("td", {}, formatSize(g.peak_ram_bytes)),
      h("td", {}, formatSize(g.peak_vram_bytes)),
      h("td", {}, g.peak_cpu_percent == null ? "—" : `${g.peak_cpu_percent.toFixed(0)} %`),
      h("td", {}, g.limit ? `${g.limit}${g.stop_how ? ` (${g.stop_how})` : ""}` : ""))));
    if (!rows.length) gens.append(h("tr", {}, h("td", { colspan: "8", class: "muted" }, "No generations yet.")));
    const bs = await api.breaches(500);
    clear(breaches, ...bs.map((b) => h("tr", {},
      h("td", {}, new Date(b.ts_ms).toLocaleString()),
      h("td", {}, b.limit),
      h("td", {}, value(b.limit, b.configured)),
      h("td", {}, value(b.limit, b.observed)),
      h("td", {}, b.action.replace(/_/g, " ")),
      h("td", {}, b.how ?? ""),
      h("td", {}, b.generation_id == null ? "" : String(b.generation_id)))));
    if (!bs.length) breaches.append(h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No limit has fired.")));
  };
  filter.addEventListener("change", () => void load());
  const exportBtn = h("button", { id: "export-csv", onclick: async () => {
    const csv = await api.exportCsv();
    const url = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
    const a = h("a", { href: url, download: "fooocus-generations.csv" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
    el.dataset.exported = String(csv.length);
  } }, "Export CSV");
  const el = h("section", { class: "history" },
    h("div", { class: "row between" }, h("h2", {}, "Generations"), h("div", { class: "row" }, filter, exportBtn)),
    h("table", { id: "generations" }, h("thead", {}, h("tr", {}, ...["Started", "Duration", "Images", "Outcome", "Peak RAM", "Peak VRAM", "Peak CPU", "Limit"].map((t) => h("th", {}, t)))), gens),
    h("h2", {}, "Limit events"),
    h("table", { id: "breaches" }, h("thead", {}, h("tr", {}, ...["When", "Limit", "Set to", "Seen", "Action", "How", "Generation"].map((t) => h("th", {}, t)))), breaches));
  return { el, show: () => void load() };
}

function value(limit: string, v: number): string {
  if (["memory", "swap", "vram"].includes(limit)) return formatSize(v);
  if (limit === "cpu") return `${v.toFixed(0)} %`;
  return formatDuration(v);
}
