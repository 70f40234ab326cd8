// The UI in headless Chromium against the mock backend (npm run build:mock first):
// node tests/browser.mjs. Saves screenshots to ../artifacts/ui/.
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { readFile, mkdir } from "node:fs/promises";
import { extname, join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..", "dist-mock");
const shots = resolve(import.meta.dirname, "..", "..", "artifacts", "ui");
await mkdir(shots, { recursive: true });
const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml" };
const server = createServer(async (req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  try {
    const body = await readFile(join(root, path === "/" ? "index.html" : path));
    res.writeHead(200, { "Content-Type": types[extname(path)] ?? "text/html" });
    res.end(body);
  } catch {
    res.writeHead(404);
    res.end();
  }
}).listen(0, "127.0.0.1");
await new Promise((r) => server.once("listening", r));
const base = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
let passed = 0, failed = 0;
async function test(name, fn) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  try {
    await fn(page);
    if (errors.length) throw new Error("page errors: " + errors.join("; "));
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
  } finally {
    await page.close();
  }
}
const expect = (cond, msg) => { if (!cond) throw new Error(msg); };

await test("dashboard draws four live graphs with limit lines", async (page) => {
  await page.goto(base);
  await page.waitForSelector(".graph canvas");
  expect((await page.locator(".graph canvas").count()) === 4, "four graphs");
  const before = Number(await page.locator(".dashboard").getAttribute("data-samples") ?? 0);
  await page.waitForTimeout(1500);
  const after = Number(await page.locator(".dashboard").getAttribute("data-samples") ?? 0);
  expect(after > before, `samples arrive (${before} -> ${after})`);
  const limit = await page.locator(".graph[data-series=ram]").getAttribute("data-limit");
  expect(limit === String(12 * 1024 ** 3), `the RAM cap is drawn: ${limit}`);
  expect(Number(await page.locator(".graph[data-series=cpu]").getAttribute("data-breaches")) >= 1, "breaches marked");
  expect((await page.locator("#gen-text").innerText()).includes("of 5 min"), "elapsed against the timeout");
  expect(await page.locator("#btn-stop-generation").isEnabled(), "stop generation enabled while generating");
  await page.screenshot({ path: join(shots, "dashboard.png") });
});

await test("the console is live and searchable", async (page) => {
  await page.goto(base);
  await page.waitForSelector("#console .line");
  await page.fill("#console-search", "Fooocus version");
  const lines = await page.locator("#console .line").allInnerTexts();
  expect(lines.length === 1 && lines[0].includes("2.5.5"), `filtered: ${lines}`);
});

await test("settings explain a bad RAM cap inline and never save it", async (page) => {
  await page.goto(base);
  await page.click("button[data-tab=settings]");
  const ram = page.locator("input[name='limits.memory_bytes']");
  await ram.fill("abc");
  await page.waitForTimeout(400);
  const err = await page.locator(".field-error[data-field='limits.memory_bytes']").innerText();
  expect(err.includes("not a size"), `inline error: ${err}`);
  expect(await page.locator("#save").isDisabled(), "save disabled while invalid");
  await ram.fill("32M");
  await page.waitForTimeout(500);
  const err2 = await page.locator(".field-error[data-field='limits.memory_bytes']").innerText();
  expect(err2.includes("64 MiB"), `server-side range: ${err2}`);
  expect(await page.locator("#save").isDisabled(), "still disabled");
  await ram.fill("10G");
  await page.waitForTimeout(500);
  expect(!(await page.locator("#save").isDisabled()), "valid again");
  expect((await page.locator("[data-would-stop]").first().innerText()).length > 0, "limit stats shown");
  await page.fill("input[name='launch.port']", "7866");
  await page.waitForTimeout(400);
  await page.click("#save");
  await page.waitForFunction(() => document.querySelector("#save-result")?.textContent?.includes("Applied now"));
  const res = await page.locator("#save-result").innerText();
  expect(res.includes("limits") && res.includes("launch options"), `save result: ${res}`);
  await page.screenshot({ path: join(shots, "settings.png"), fullPage: true });
});

await test("history filters and exports CSV", async (page) => {
  await page.goto(base);
  await page.click("button[data-tab=history]");
  await page.waitForSelector("#generations tbody tr");
  const all = await page.locator("#generations tbody tr").count();
  await page.selectOption("#outcome-filter", "timed_out");
  await page.waitForTimeout(300);
  const some = await page.locator("#generations tbody tr").count();
  expect(some > 0 && some < all, `filter: ${all} -> ${some}`);
  const download = page.waitForEvent("download");
  await page.click("#export-csv");
  const d = await download;
  expect(d.suggestedFilename() === "fooocus-generations.csv", d.suggestedFilename());
  const text = await readFile(await d.path(), "utf8");
  expect(text.startsWith("id,started_ms"), "CSV header");
  await page.screenshot({ path: join(shots, "history.png"), fullPage: true });
});

await test("first run offers detected installs and a folder picker", async (page) => {
  await page.goto(base + "?state=not_configured");
  await page.waitForSelector(".first-run");
  expect((await page.locator(".installs li").count()) >= 1, "detected installs listed");
  expect(await page.locator("#choose-folder").isVisible(), "folder picker");
  await page.screenshot({ path: join(shots, "first-run.png") });
});

await browser.close();
server.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
