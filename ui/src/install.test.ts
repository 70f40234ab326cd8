import { describe, expect, it } from "vitest";
import { bytes, progressText, type InstallJobStatus } from "./views/install";
import { downloadText } from "./views/model-download";

const job = (o: Partial<InstallJobStatus>): InstallJobStatus => ({
  running: true, target: "/x/Fooocus", phase: null, label: null, index: 0, count: 7, done_bytes: 0,
  total_bytes: null, log: [], error: null, cancelled: false, installed: null, ...o,
});

describe("install progress", () => {
  it("names the step, the bytes and the percentage", () => {
    expect(progressText(job({}))).toBe("Starting…");
    expect(progressText(job({ label: "Downloading Fooocus", done_bytes: 120 << 20, total_bytes: 2 * 2 ** 30 })))
      .toBe("Step 1 of 7: Downloading Fooocus — 120 MB of 2.0 GB (5 %)");
    expect(progressText(job({ label: "Installing torch", index: 4 }))).toBe("Step 5 of 7: Installing torch");
    expect(progressText(job({ label: "Unpacking", index: 2, done_bytes: 5000 }))).toBe("Step 3 of 7: Unpacking — 5 KB");
  });
  it("shows sizes as users read them", () => {
    expect(bytes(6.1 * 2 ** 30)).toBe("6.1 GB");
    expect(bytes(40 << 20)).toBe("40 MB");
  });
});

describe("first start model download", () => {
  it("shows the file and the bar's figures", () => {
    expect(downloadText({ file: "juggernautXL_v8Rundiffusion.safetensors", percent: 45, size: "2.91G/6.46G" }))
      .toBe("Downloading juggernautXL_v8Rundiffusion.safetensors: 45 %, 2.91G/6.46G");
    expect(downloadText({ file: null, percent: null, size: null })).toBe("Downloading models");
  });
});
