// The first start's model download on the dashboard: Fooocus downloads GBs of models before it
// is ready; the guard reads the download from its console (Status.download) and shows it here.
import { h } from "../dom";
import type { Status } from "../types";

export function downloadText(d: NonNullable<Status["download"]>): string {
  const what = d.file ? `Downloading ${d.file}` : "Downloading models";
  const amount = [d.percent != null ? `${d.percent} %` : null, d.size].filter(Boolean).join(", ");
  return amount ? `${what}: ${amount}` : what;
}

export function modelDownload(): { el: HTMLElement; status: (s: Status) => void } {
  const text = h("div", { id: "model-download-text" });
  const bar = h("progress", { id: "model-download-bar", max: "100" }) as HTMLProgressElement;
  const el = h("div", { class: "card model-download hidden", id: "model-download" },
    h("h2", {}, "First start: downloading Fooocus's models"), text, bar,
    h("p", { class: "muted" }, "This takes a while once; the start-up limit waits as long as the download moves."));
  return {
    el,
    status: (s: Status) => {
      const d = s.download;
      el.classList.toggle("hidden", !d);
      if (!d) return;
      text.textContent = downloadText(d);
      if (d.percent != null) bar.value = d.percent; else bar.removeAttribute("value");
    },
  };
}
