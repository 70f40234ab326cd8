// Durations and sizes as users write them ("90s", "10m", "12G"), and back. Mirrors
// crates/core/src/units.rs so the settings panel accepts what the config file accepts.

const DUR: Record<string, number> = { s: 1, sec: 1, m: 60, min: 60, h: 3600, hr: 3600 };
const SIZE: Record<string, number> = { "": 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4 };

export type Parsed = { ok: true; value: number | null } | { ok: false; error: string };

const off = (t: string) => t === "" || t === "0" || /^(off|none)$/i.test(t);

/** "90s", "10m", "1h30m", "1.5h", "45" (seconds). null = no limit. */
export function parseDuration(text: string): Parsed {
  const t = text.trim();
  if (off(t)) return { ok: true, value: null };
  if (/^\d+(\.\d+)?$/.test(t)) return { ok: true, value: Number(t) };
  const re = /(\d+(?:\.\d+)?)\s*([a-z]+)/gi;
  let total = 0;
  let consumed = "";
  for (const m of t.matchAll(re)) {
    const scale = DUR[m[2].toLowerCase()];
    if (scale === undefined) return { ok: false, error: `'${text}' is not a duration: write it like 90s, 10m or 1h30m` };
    total += Number(m[1]) * scale;
    consumed += m[0];
  }
  if (!consumed || consumed.replace(/\s/g, "") !== t.replace(/\s/g, "") || total <= 0) {
    return { ok: false, error: `'${text}' is not a duration: write it like 90s, 10m or 1h30m` };
  }
  return { ok: true, value: total };
}

/** "800M", "12G", "1.5GiB", bytes. null = no limit. */
export function parseSize(text: string): Parsed {
  const t = text.trim();
  if (off(t)) return { ok: true, value: null };
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(t);
  const scale = m ? SIZE[m[2].toLowerCase()] : undefined;
  if (!m || scale === undefined) return { ok: false, error: `'${text}' is not a size: write it like 800M, 12G or 1.5G` };
  const v = Math.round(Number(m[1]) * scale);
  return { ok: true, value: v === 0 ? null : v };
}

export function parsePercent(text: string): Parsed {
  const t = text.trim().replace(/%$/, "").trim();
  if (off(t)) return { ok: true, value: null };
  if (!/^\d+$/.test(t)) return { ok: false, error: `'${text}' is not a CPU percentage: 100 = one core` };
  return { ok: true, value: Number(t) };
}

export function formatSize(bytes: number | null | undefined): string {
  if (bytes == null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  if (u === 0) return `${bytes} B`;
  return `${v >= 100 || Math.abs(v - Math.round(v)) < 0.05 ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}

/** Short form for inputs: "12G", "800M". */
export function sizeInput(bytes: number | null): string {
  if (bytes == null) return "off";
  for (const [u, s] of [["T", 1024 ** 4], ["G", 1024 ** 3], ["M", 1024 ** 2], ["K", 1024]] as const) {
    if (bytes >= s) {
      const v = bytes / s;
      return `${Number.isInteger(v) ? v : v.toFixed(2).replace(/0+$/, "")}${u}`;
    }
  }
  return String(bytes);
}

export function formatDuration(s: number | null | undefined): string {
  if (s == null) return "—";
  if (s < 60) return s < 10 && s % 1 ? `${s.toFixed(1)} s` : `${Math.round(s)} s`;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.round(s % 60);
  if (h) return m ? `${h} h ${m} min` : `${h} h`;
  return sec ? `${m} min ${sec} s` : `${m} min`;
}

export function durationInput(s: number | null): string {
  if (s == null) return "off";
  if (s % 3600 === 0) return `${s / 3600}h`;
  if (s % 60 === 0) return `${s / 60}m`;
  return `${s}s`;
}
