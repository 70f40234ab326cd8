// Imported first: under LANG=C (CI, minimal desktops) WebKitGTK reports navigator.language as
// "C", which Intl rejects -- and uPlot formats numbers with it when it loads.
try {
  new Intl.NumberFormat(navigator.language);
} catch {
  Object.defineProperty(navigator, "language", { get: () => "en-US" });
  Object.defineProperty(navigator, "languages", { get: () => ["en-US"] });
}
export {};
