// Live progress in a real browser: the demo page's EventSource (command=watch) and its polling
// fallback, an upload on one instance pushed live by another (two demo instances over one
// Redis, started by run.sh), and nginx's upload progress dialect read as the module's README
// client reads it (XHR with an X-Progress-ID header) and as JSONP. Run with tests/browser/run.sh.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { BASE, assertStored, fileFactory, launch, newPage, screenshot, throttle, waitFor } from "./lib.mjs";

const URL_A = process.env.DEMO_REDIS_URL_A;
const URL_B = process.env.DEMO_REDIS_URL_B;

let browser;
let files;

before(async () => {
  browser = await launch();
  files = fileFactory();
});

after(async () => {
  await browser?.close();
  files?.cleanup();
});

/** The demo page at `base`, its uploads throttled to `throughput` bytes/s. */
async function openDemo(base, { throughput, init } = {}) {
  const page = await newPage(browser.context);
  if (init) await page.addInitScript(init);
  if (throughput) await throttle(page, throughput);
  await page.goto(`${base}/`);
  return page;
}

/** The row of `name`: key, state, status, how its progress arrives, bytes on the server. */
function row(page, name) {
  return page.evaluate((name) => {
    const row = [...document.querySelectorAll("#uploads .upload")].find((r) => r.dataset.name === name);
    if (!row) return null;
    return {
      key: row.dataset.key,
      state: row.dataset.state,
      status: row.dataset.status,
      transport: row.dataset.transport,
      events: Number(row.dataset.events || 0),
      serverBytes: Number(row.dataset.serverBytes || 0),
    };
  }, name);
}

/** Samples the row until it leaves `uploading`. */
async function follow(page, name) {
  const samples = [];
  const last = await waitFor(
    async () => {
      const now = await row(page, name);
      if (now) samples.push(now);
      return now && now.state !== "uploading" ? now : null;
    },
    { timeout: 30000, what: `the upload of ${name} to end` },
  );
  return { last, samples };
}

describe("live progress", () => {
  test("the demo page follows its upload with an EventSource, not polling", async () => {
    const file = files.make("sse-page.bin", 900 * 1024);
    const page = await openDemo(BASE, { throughput: 300 * 1024 });
    const polls = [];
    const watches = [];
    page.on("request", (request) => {
      if (request.url().includes("command=status")) polls.push(request.url());
      if (request.url().includes("command=watch")) watches.push(request.url());
    });
    await page.setInputFiles("#files", file.path);
    const { last, samples } = await follow(page, file.name);
    assert.equal(last.state, "finished", JSON.stringify(last));
    assert.equal(last.transport, "sse");
    assert.ok(watches.length >= 1, "an EventSource was opened");
    assert.ok(last.events >= 3, `progress events arrived (${last.events})`);
    assert.ok(
      samples.some((s) => s.status === "1" && s.serverBytes > 0 && s.serverBytes < file.size),
      "the server's count was pushed in the middle of the upload",
    );
    // The page only asks `command=status` once, after its POST is answered.
    assert.ok(polls.length <= 1, `no polling while it streamed: ${polls.length} status requests`);
    assertStored(file);
    await screenshot(page, "sse-demo-page");
    await page.close();
  });

  test("without EventSource the page polls, and still shows progress", async () => {
    const file = files.make("sse-fallback.bin", 600 * 1024);
    const page = await openDemo(BASE, {
      throughput: 300 * 1024,
      init: () => {
        delete window.EventSource;
      },
    });
    await page.setInputFiles("#files", file.path);
    const { last, samples } = await follow(page, file.name);
    assert.equal(last.state, "finished");
    assert.equal(last.transport, "poll");
    assert.ok(samples.some((s) => s.serverBytes > 0 && s.serverBytes < file.size), "polled progress");
    await page.close();
  });

  test("an upload made on instance A is pushed live by instance B", { skip: !URL_A || !URL_B }, async () => {
    const file = files.make("sse-across.bin", 900 * 1024);
    const uploader = await openDemo(URL_A, { throughput: 250 * 1024 });
    await uploader.setInputFiles("#files", file.path);
    const key = (await waitFor(() => row(uploader, file.name), { what: "the row on A" })).key;

    // A page of instance B watches the key with a plain EventSource, once B sees it in Redis.
    const watcher = await newPage(browser.context);
    await watcher.goto(`${URL_B}/`);
    const events = await watcher.evaluate(async (key) => {
      const status = () => fetch(`/status?key=${key}&command=status`).then((r) => r.json());
      for (let i = 0; i < 100 && (await status()).status === 3; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return new Promise((resolve, reject) => {
        const seen = [];
        const source = new EventSource(`/status?key=${key}&command=watch`);
        source.onmessage = (event) => {
          seen.push({ id: event.lastEventId, at: Date.now(), ...JSON.parse(event.data) });
          if (event.lastEventId === "end") {
            source.close();
            resolve(seen);
          }
        };
        setTimeout(() => reject(new Error(`no end event: ${JSON.stringify(seen)}`)), 30000);
      });
    }, key);
    await screenshot(uploader, "sse-across-uploader");
    const { last } = await follow(uploader, file.name);
    assert.equal(last.state, "finished");

    const middle = events.filter((e) => e.status === 1 && e.bytesUploaded > 0 && e.bytesUploaded < file.size);
    assert.ok(middle.length >= 2, `B pushed A's progress while it streamed: ${JSON.stringify(events)}`);
    for (let i = 1; i < events.length; i += 1) {
      assert.ok(events[i].bytesUploaded >= events[i - 1].bytesUploaded, "progress never goes back");
    }
    const end = events[events.length - 1];
    assert.deepEqual(
      { status: end.status, error: end.error, bytesUploaded: end.bytesUploaded, size: end.size },
      { status: 2, error: -1, bytesUploaded: file.size, size: file.size },
    );
    await watcher.close();
    await uploader.close();
  });

  test("nginx's upload progress dialect, read as the module's README client and as JSONP", async () => {
    const file = files.make("sse-nginx.bin", 700 * 1024);
    const page = await openDemo(BASE, { throughput: 250 * 1024 });
    await page.setInputFiles("#files", file.path);
    const key = (await waitFor(() => row(page, file.name), { what: "the row" })).key;
    // The README's client: GET /progress with an X-Progress-ID header every interval, until
    // `done` (an `error` ends it too).
    const states = await page.evaluate(
      (key) =>
        new Promise((resolve) => {
          const seen = [];
          const timer = setInterval(() => {
            const req = new XMLHttpRequest();
            req.open("GET", "/progress", true);
            req.setRequestHeader("X-Progress-ID", key);
            req.onreadystatechange = () => {
              if (req.readyState !== 4 || req.status !== 200) return;
              const upload = JSON.parse(req.responseText);
              seen.push(upload);
              if (upload.state === "done" || upload.state === "error") {
                clearInterval(timer);
                resolve(seen);
              }
            };
            req.send(null);
          }, 150);
        }),
      key,
    );
    assert.equal(states[states.length - 1].state, "done");
    const uploading = states.filter((s) => s.state === "uploading");
    assert.ok(uploading.length >= 1, JSON.stringify(states));
    for (const s of uploading) {
      assert.deepEqual(Object.keys(s).sort(), ["received", "size", "state"]);
      // `size` is what the server expects (before the end, the request's length, as nginx
      // reports it), never less than the file.
      assert.ok(s.received <= s.size && s.size >= file.size, JSON.stringify(s));
    }
    // JSONP, loaded as a script as a JSONP client does.
    const jsonp = await page.evaluate(
      (key) =>
        new Promise((resolve, reject) => {
          window.progressCallback = resolve;
          const script = document.createElement("script");
          script.src = `/progress?X-Progress-ID=${key}&callback=progressCallback`;
          script.onerror = reject;
          document.head.append(script);
        }),
      key,
    );
    assert.deepEqual(jsonp, { state: "done" });
    await page.close();
  });
});
