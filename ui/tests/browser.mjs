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
async function test(name, fn, options = {}) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, ...options });
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
  expect(/left before the 5 min timeout/.test(await page.locator("#gen-text").innerText()), "time left before the timeout");
  // The legend says the live value against the limit, the window's peak and the limit in words.
  const legend = await page.locator(".graph[data-series=ram] .graph-legend").innerText();
  expect(/^Now [\d.]+ GiB of 12 GiB · peak [\d.]+ GiB · limit 12 GiB$/.test(legend), `RAM legend: ${legend}`);
  expect(/GiB of 7 GiB/.test(await page.locator(".graph[data-series=vram] .graph-legend").innerText()), "VRAM legend against its limit");
  // Breach markers name their limit: the mock's timeout is on every graph, its VRAM breach (50 min ago) is outside 10 min.
  expect((await page.locator(".graph[data-series=ram]").getAttribute("data-breach-limits")) === "timeout", "breach names its limit");
  // Hover shows the values at that time.
  const box = await page.locator(".graph[data-series=ram] .u-over").boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.waitForFunction(() => document.querySelector(".graph[data-series=ram] .graph-legend")?.getAttribute("data-mode") === "hover");
  const hover = await page.locator(".graph[data-series=ram] .graph-legend").innerText();
  expect(/\d:\d\d.*: [\d.]+ GiB of 12 GiB/.test(hover), `hover legend: ${hover}`);
  await page.mouse.move(0, 0);
  expect(await page.locator("#btn-stop-generation").isEnabled(), "stop generation enabled while generating");
  await page.screenshot({ path: join(shots, "dashboard.png") });
});

await test("asleep, the dashboard says it wakes on a visit, what it gave back, and shades the sleeping spans", async (page) => {
  await page.goto(base + "?state=asleep");
  await page.waitForSelector("#sleep-line:not(.hidden)");
  const line = await page.locator("#sleep-line").innerText();
  expect(/^Asleep: wakes when you open Fooocus \(8\.8 GiB RAM, 6\.6 GiB VRAM given back\)$/.test(line), `asleep line: ${line}`);
  expect((await page.locator("#state").innerText()) === "Asleep", "state label");
  expect(await page.locator("#btn-wake").isVisible() && await page.locator("#btn-wake").isEnabled(), "Wake offered");
  expect(!(await page.locator("#btn-sleep").isVisible()), "no Sleep now while asleep");
  expect(!(await page.locator("#btn-start").isEnabled()), "Wake is the start");
  expect(await page.locator("#btn-browser").isEnabled(), "opening Fooocus in the browser wakes it");
  const spans = JSON.parse(await page.locator(".graph[data-series=ram]").getAttribute("data-sleeps"));
  expect(spans.length === 2 && spans[1][1] === null, `sleeping spans: ${JSON.stringify(spans)}`);
  await page.locator("[data-range='21600']").click();
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(shots, "dashboard-asleep.png") });
});

await test("without a GPU a plain panel replaces the GPU and VRAM graphs", async (page) => {
  await page.goto(base + "?gpu=none");
  await page.waitForSelector("#no-gpu:not(.hidden)");
  expect((await page.locator("#no-gpu").innerText()).includes("No NVIDIA or AMD GPU found: VRAM limits are off"), "panel text");
  expect(!(await page.locator(".graph[data-series=vram]").isVisible()) && !(await page.locator(".graph[data-series=gpu]").isVisible()), "GPU graphs hidden");
  expect((await page.locator(".graph:visible canvas").count()) === 2, "CPU and RAM graphs stay");
  const axes = await page.locator(".graphs").innerText();
  expect(!/\b0\.5 B\b/.test(axes), "no axis of fractions of a byte");
  await page.screenshot({ path: join(shots, "dashboard-no-gpu.png") });
});

await test("graphs nobody can see are not drawn, and catch up when shown", async (page) => {
  // Held by reference: the dashboard leaves the document while another tab is shown.
  const draws = (s) => page.evaluate((s) => Number(window.graphs[s].dataset.draws ?? 0), s);
  await page.goto(base + "?gpu=none");
  await page.waitForSelector(".dashboard[data-listening=true]");
  await page.evaluate(() => { window.graphs = Object.fromEntries([...document.querySelectorAll(".graph[data-series]")].map((g) => [g.dataset.series, g])); window.board = document.querySelector(".dashboard"); });
  const ram0 = await draws("ram");
  await page.waitForFunction((n) => Number(window.graphs.ram.dataset.draws ?? 0) > n + 1, ram0);
  expect((await draws("vram")) === 0 && (await draws("gpu")) === 0, "the hidden GPU graphs were drawn");
  // Another tab: samples keep arriving (the mock sends one a second), nothing is drawn.
  await page.click("button[data-tab=history]");
  const away = await draws("ram");
  const samples = await page.evaluate(() => Number(window.board.dataset.samples));
  await page.waitForFunction((n) => Number(window.board.dataset.samples) >= n + 2, samples);
  expect((await draws("ram")) === away, "the RAM graph was drawn while the History tab was shown");
  await page.click("button[data-tab=dashboard]");
  await page.waitForFunction((n) => Number(window.graphs.ram.dataset.draws ?? 0) > n, away);
  expect(/of 12 GiB/.test(await page.locator(".graph[data-series=ram] .graph-legend").innerText()), "the legend caught up with the limit");
});

await test("the current generation shows image, step, time per step, ETA and time left", async (page) => {
  await page.goto(base);
  // The mock advances one step every 0.5 s: two step changes give the pace.
  await page.waitForFunction(() => / s per step/.test(document.querySelector("#gen-pace")?.textContent ?? ""));
  const title = await page.locator("#gen-title").innerText();
  expect(/^Generation 42: Image [1-4] of 4 · step \d+ of 30$/.test(title), `title: ${title}`);
  const pace = await page.locator("#gen-pace").innerText();
  const m = /^([\d.]+) s per step · about (.+) to go$/.exec(pace);
  expect(m && Number(m[1]) > 0.2 && Number(m[1]) < 2, `pace: ${pace}`);
  const left = await page.locator("#gen-text").innerText();
  expect(/^\d+ min( \d+ s)? left before the 5 min timeout$/.test(left), `time left: ${left}`);
  await page.screenshot({ path: join(shots, "dashboard-generating.png") });
});

await test("a VRAM stop shows why it stopped, the last minute, what the guard did and a suggestion", async (page) => {
  await page.goto(base);
  await page.waitForSelector(".dashboard[data-listening=true] .graph canvas");
  await page.evaluate(() => window.mockGuard.stopByLimit("vram", "graceful"));
  await page.waitForSelector("#why-card:not(.hidden)");
  const card = page.locator("#why-card");
  const text = await card.innerText();
  expect(text.includes("Why generation 42 stopped"), `title: ${text}`);
  expect(/used 7\.4 GiB of VRAM, over its 7 GiB limit/.test(text), `what happened: ${text}`);
  expect(/asked Fooocus to stop.*10 s grace/.test(text), `what the guard did: ${text}`);
  expect(text.includes("always-low-vram"), `suggestion: ${text}`);
  expect((await card.locator("svg.spark polyline").count()) === 3, "RAM, VRAM and CPU over the last minute");
  expect(/VRAM [\d.]+ GiB of 7 GiB/.test(await card.locator(".spark-legend").innerText()), "peaks against limits");
  const vramMarks = await page.locator(".graph[data-series=vram]").getAttribute("data-breach-limits");
  expect(vramMarks.split(",").includes("vram"), `VRAM breach marked on the VRAM graph: ${vramMarks}`);
  expect(!(await page.locator(".graph[data-series=ram]").getAttribute("data-breach-limits")).includes("vram"), "and not on the RAM graph");
  expect((await page.locator("#gen-title").innerText()) === "No generation running", "the generation is over");
  await page.screenshot({ path: join(shots, "dashboard-why-stopped.png") });
  await page.click("#why-dismiss");
  expect(!(await card.isVisible()), "dismissed");
});

await test("a kill after the grace says so and suggests a longer timeout", async (page) => {
  await page.goto(base);
  await page.waitForSelector(".dashboard[data-listening=true] .graph canvas");
  await page.evaluate(() => window.mockGuard.stopByLimit("timeout", "killed"));
  await page.waitForSelector("#why-card:not(.hidden)");
  const text = await page.locator("#why-card").innerText();
  expect(/past its 5 min timeout/.test(text) && /killed Fooocus and restarted it/.test(text) && /Raise the timeout/.test(text), text);
});

await test("the dashboard follows a dark OS theme", async (page) => {
  await page.goto(base);
  await page.waitForSelector(".graph canvas");
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  expect(bg === "rgb(20, 23, 29)", `dark background: ${bg}`);
  await page.screenshot({ path: join(shots, "dashboard-dark.png") });
}, { colorScheme: "dark" });

await test("the console is live and searchable", async (page) => {
  await page.goto(base);
  await page.waitForSelector("#console .line");
  await page.fill("#console-search", "Fooocus version");
  const lines = await page.locator("#console .line").allInnerTexts();
  expect(lines.length === 1 && lines[0].includes("2.5.5"), `filtered: ${lines}`);
});

await test("the console appends live lines once each, and a cleared search shows them all again", async (page) => {
  await page.goto(base);
  await page.waitForSelector("#console .line");
  const before = await page.locator("#console .line").count();
  await page.waitForFunction((n) => document.querySelectorAll("#console .line").length > n, before, { timeout: 15000 });
  const live = await page.locator("#console .line").allInnerTexts();
  expect(live.filter((t) => t.includes("Fooocus version")).length === 1, `the first lines once: ${live.slice(0, 5)}`);
  await page.fill("#console-search", "Fooocus version");
  await page.fill("#console-search", "");
  const all = await page.locator("#console .line").allInnerTexts();
  expect(all.length >= live.length && all.slice(0, live.length).join("\n") === live.join("\n"), `after the search: ${all.length} lines, ${live.length} before`);
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
  // Install Fooocus beside it: what it downloads and the disk it needs, before anything happens.
  await page.waitForSelector("#install-summary:has-text('disk')");
  const summary = await page.locator("#install-summary").textContent();
  expect(/Fooocus 2\.5\.5/.test(summary) && /needs 6\.1 GB of disk/.test(summary) && /CUDA/.test(summary), summary);
  expect(await page.locator("#install-start").isEnabled(), "install button");
  await page.screenshot({ path: join(shots, "first-run.png") });
  // A package the user already downloaded replaces the release's download.
  await page.locator("#install-own summary").click();
  await page.locator("#install-source").fill("/home/me/Downloads/Fooocus-2.5.5.tar.gz");
  await page.locator("#install-source-use").click();
  await page.waitForSelector("#install-summary:has-text('Downloads/Fooocus-2.5.5.tar.gz')");
});

await test("a half-done install resumes, or is discarded after a second click", async (page) => {
  await page.goto(base + "?state=not_configured&install=partial");
  await page.waitForSelector("#install-summary:has-text('resumes')");
  expect((await page.locator("#install-start").textContent()) === "Resume the install", "resume offered");
  const discard = page.locator("#install-discard");
  expect(await discard.isVisible(), "discard offered");
  await discard.click();
  expect(/Click again/.test(await discard.textContent()), "the first click only asks");
  expect(/resumes/.test(await page.locator("#install-summary").textContent()), "nothing deleted yet");
  await discard.click();
  await page.waitForSelector("#install-start:has-text('Install Fooocus')");
  expect(!/resumes/.test(await page.locator("#install-summary").textContent()), "the next install starts over");
  expect(!(await discard.isVisible()), "nothing left to discard");
  expect(/deleted/.test(await page.locator("#install-step").textContent()), "said what happened");
});

await browser.close();
server.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
