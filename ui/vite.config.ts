import { defineConfig } from "vite";

// The mock build installs a fake backend (src/mock) so the UI runs in a plain browser.
export default defineConfig(({ mode }) => ({
  clearScreen: false,
  define: { __MOCK__: JSON.stringify(mode === "mock") },
  build: { target: "es2022", sourcemap: false, chunkSizeWarningLimit: 600 },
  server: { port: 1420, strictPort: true, host: "127.0.0.1" },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
}));
