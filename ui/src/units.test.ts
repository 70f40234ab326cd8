import { describe, expect, it } from "vitest";
import { durationInput, formatDuration, formatSize, parseDuration, parsePercent, parseSize, sizeInput } from "./units";

describe("units", () => {
  it("parses durations like the config file", () => {
    expect(parseDuration("90s")).toEqual({ ok: true, value: 90 });
    expect(parseDuration("10m")).toEqual({ ok: true, value: 600 });
    expect(parseDuration("1h30m")).toEqual({ ok: true, value: 5400 });
    expect(parseDuration("1.5h")).toEqual({ ok: true, value: 5400 });
    expect(parseDuration("off")).toEqual({ ok: true, value: null });
    expect(parseDuration("ten minutes").ok).toBe(false);
    expect(parseDuration("5x").ok).toBe(false);
  });
  it("parses sizes in binary units", () => {
    expect(parseSize("800M")).toEqual({ ok: true, value: 800 * 1024 ** 2 });
    expect(parseSize("12G")).toEqual({ ok: true, value: 12 * 1024 ** 3 });
    expect(parseSize("1.5GiB")).toEqual({ ok: true, value: 1.5 * 1024 ** 3 });
    expect(parseSize("abc").ok).toBe(false);
    expect(parseSize("-1G").ok).toBe(false);
    expect(parseSize("0")).toEqual({ ok: true, value: null });
  });
  it("parses CPU percentages", () => {
    expect(parsePercent("150%")).toEqual({ ok: true, value: 150 });
    expect(parsePercent("1.5").ok).toBe(false);
  });
  it("formats for people and for inputs", () => {
    expect(formatSize(800 * 1024 ** 2)).toBe("800 MiB");
    expect(formatSize(1.5 * 1024 ** 3)).toBe("1.5 GiB");
    expect(formatDuration(300)).toBe("5 min");
    expect(formatDuration(5400)).toBe("1 h 30 min");
    expect(sizeInput(12 * 1024 ** 3)).toBe("12G");
    expect(sizeInput(null)).toBe("off");
    expect(durationInput(600)).toBe("10m");
    expect(durationInput(90)).toBe("90s");
  });
});
