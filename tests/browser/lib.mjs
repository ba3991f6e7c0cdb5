// Shared helpers for the browser tests: Chromium, the demo server run.sh started, test files,
// the upload folder, the status service.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run the browser tests with tests/browser/run.sh`);
  }
  return value;
}

/** The demo server run.sh started: `http://127.0.0.1:PORT`. */
export const BASE = required("DEMO_URL").replace(/\/$/, "");
/** Its `--upload-dir`. */
export const UPLOAD_DIR = required("DEMO_UPLOAD_DIR");
/** Its `--max-file-size`, in bytes. */
export const MAX_FILE_SIZE = Number(required("DEMO_MAX_FILE_SIZE"));
/** Where the upload layer keeps files while they stream in. */
export const TEMP_DIR = path.join(UPLOAD_DIR, ".tower-upload-tmp");
export const SCREENSHOTS = path.join(here, "screenshots");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

/**
 * Headless Debian Chromium with a fresh profile; Playwright never downloads a browser.
 * `options` go to the context, e.g. `{ javaScriptEnabled: false }`.
 */
export async function launch(options = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tower-upload-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1000, height: 800 },
    ...options,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * A new page that records the upload POSTs (`page.uploads`: `{url, keys, start, end, status,
 * failure}`; `await page.uploadsEnded()` waits for them) and logs page errors.
 */
export async function newPage(context) {
  const page = await context.newPage();
  const uploads = [];
  page.uploads = uploads;
  const isUpload = (request) =>
    request.method() === "POST" && new URL(request.url()).pathname === "/upload";
  page.on("request", (request) => {
    if (!isUpload(request)) return;
    const url = new URL(request.url());
    // The widget puts `key=K1;K2` in the URL raw; URLSearchParams keeps the `;`.
    const keys = (url.searchParams.get("key") || "").split(";").filter(Boolean);
    uploads.push({ request, url: request.url(), keys, start: Date.now(), end: null, status: null, failure: null });
  });
  const find = (request) => uploads.find((u) => u.request === request);
  page.on("response", (response) => {
    const upload = find(response.request());
    if (upload) upload.status = response.status();
  });
  const end = (request, failure) => {
    const upload = find(request);
    if (upload && upload.end === null) {
      upload.end = Date.now();
      if (failure) upload.failure = failure;
    }
  };
  page.on("requestfinished", (request) => end(request, null));
  page.on("requestfailed", (request) => end(request, request.failure()?.errorText || "failed"));
  /** Waits until every upload POST seen so far has ended; returns them. */
  page.uploadsEnded = () =>
    waitFor(() => uploads.every((u) => u.end !== null) && uploads, { what: "the upload POSTs to end" });
  page.on("pageerror", (error) => console.log(`# page error: ${error.message}`));
  return page;
}

/** Upload throughput of `page`'s network, in bytes per second (CDP network emulation). */
export async function throttle(page, bytesPerSecond) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond,
  });
  return cdp;
}

export async function screenshot(page, name) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** A folder for the files the tests upload; removed by `cleanup()`. */
export function fileFactory() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tower-upload-files-"));
  return {
    dir,
    /** A file of `size` random bytes named `name`: `{path, name, bytes}`. */
    make(name, size) {
      const file = path.join(dir, name);
      const bytes = randomBytes(size);
      fs.writeFileSync(file, bytes);
      return { path: file, name, bytes, size };
    },
    cleanup() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `GET /status?key=K&command=C` from the test itself. */
export async function command(key, name = "status") {
  const response = await fetch(`${BASE}/status?key=${encodeURIComponent(key)}&command=${name}`);
  assert.equal(response.headers.get("cache-control"), "no-store");
  return response.json();
}

/** Polls `probe` every 100 ms until it returns a truthy value; throws after `timeout` ms. */
export async function waitFor(probe, { timeout = 15000, what = "a condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The file as stored in the upload folder equals what was uploaded. */
export function assertStored(file) {
  const stored = path.join(UPLOAD_DIR, file.name);
  assert.ok(fs.existsSync(stored), `${file.name} is in the upload folder`);
  assert.ok(fs.readFileSync(stored).equals(file.bytes), `${file.name} has the uploaded bytes`);
}

/** Nothing of `file` was kept: no final file (nor a `name (1)` twin) and no temp file. */
export async function assertNothingKept(file) {
  const stem = path.parse(file.name).name;
  const kept = fs.existsSync(UPLOAD_DIR)
    ? fs.readdirSync(UPLOAD_DIR).filter((entry) => entry.startsWith(stem))
    : [];
  assert.deepEqual(kept, [], `no file of ${file.name} in the upload folder`);
  // The temp file is deleted off the async threads: give it a moment.
  const entries = await waitFor(
    () => {
      const left = fs.existsSync(TEMP_DIR) ? fs.readdirSync(TEMP_DIR) : [];
      return left.length === 0 ? [] : null;
    },
    { timeout: 5000, what: `an empty ${TEMP_DIR}` },
  ).catch(() => fs.readdirSync(TEMP_DIR));
  assert.deepEqual(entries, [], "the temp folder is empty");
}
