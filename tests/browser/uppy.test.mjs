// The Uppy file uploader (npm `uppy`, its prebuilt browser bundle) on the demo's /uppy page:
// Dashboard + @uppy/xhr-upload posting keyless to /upload, one request per file. Uppy must
// see the layer's JSON as each file's response body, and a refusal's serverMessage as the
// file's error. Run with tests/browser/run.sh.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";

import {
  BASE,
  MAX_FILE_SIZE,
  UPLOAD_DIR,
  assertNothingKept,
  command,
  fileFactory,
  launch,
  newPage,
  screenshot,
  throttle,
  waitFor,
} from "./lib.mjs";

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

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

/** Opens /uppy and waits for Uppy; records its upload-progress events in `window.progress`. */
async function openUppy({ uploadThroughput } = {}) {
  const page = await newPage(browser.context);
  if (uploadThroughput) await throttle(page, uploadThroughput);
  await page.goto(`${BASE}/uppy`);
  await page.waitForFunction(() => window.uppyReady === true, null, { timeout: 10000 });
  await page.evaluate(() => {
    window.progress = [];
    window.uppy.on("upload-progress", (file, progress) =>
      window.progress.push({ name: file.name, bytesUploaded: progress.bytesUploaded, bytesTotal: progress.bytesTotal }),
    );
  });
  return page;
}

/** Adds `picked` through the Dashboard's own (hidden) file input and presses its Upload button. */
async function addAndUpload(page, picked) {
  // The first input takes files; the second (webkitdirectory) takes a folder.
  const input = page.locator("#uppy input.uppy-Dashboard-input:not([webkitdirectory])");
  await input.setInputFiles(picked.map((f) => f.path));
  const upload = page.locator(".uppy-StatusBar-actionBtn--upload");
  await upload.waitFor();
  assert.match(await upload.textContent(), new RegExp(`Upload ${picked.length} files?`));
  await upload.click();
}

/** Waits for Uppy's `complete` event: `{successful: [names], failed: [names]}`. */
function complete(page) {
  return waitFor(
    () => page.evaluate(() => window.uppyEvents.find((e) => e.event === "complete")),
    { timeout: 30000, what: "Uppy's complete event" },
  );
}

/** What Uppy holds for each file: its response (status, body), error and progress. */
function uppyFiles(page) {
  return page.evaluate(() =>
    window.uppy.getFiles().map((f) => ({
      name: f.name,
      response: f.response ?? null,
      error: f.error ?? null,
      progress: f.progress,
    })),
  );
}

test("Uppy uploads several files keyless, shows progress and keeps the server's JSON", async () => {
  const picked = [
    files.make("uppy-one.bin", 300 * 1024 + 1),
    files.make("uppy-two.bin", 250 * 1024),
    files.make("uppy-three.txt", 10 * 1024),
  ];
  // Slow enough that progress is seen on the way.
  const page = await openUppy({ uploadThroughput: 400 * 1024 });
  await addAndUpload(page, picked);
  await waitFor(() => page.locator(".uppy-StatusBar.is-uploading").count(), {
    what: "the status bar to show the upload in progress",
  });
  const done = await complete(page);
  assert.deepEqual([...done.successful].sort(), picked.map((f) => f.name).sort());
  assert.deepEqual(done.failed, []);

  // One keyless POST per file, each 200.
  const posts = await page.uploadsEnded();
  assert.equal(posts.length, picked.length);
  for (const post of posts) {
    assert.equal(post.status, 200);
    assert.deepEqual(post.keys, [], "no key in the URL: the layer makes it");
  }

  // Progress went through intermediate values before the end.
  const progress = await page.evaluate(() => window.progress);
  const big = progress.filter((p) => p.name === "uppy-one.bin");
  assert.ok(big.some((p) => p.bytesUploaded > 0 && p.bytesUploaded < p.bytesTotal), `partial progress: ${JSON.stringify(big)}`);

  const held = await uppyFiles(page);
  const keys = new Set();
  for (const file of picked) {
    const uppyFile = held.find((f) => f.name === file.name);
    assert.ok(uppyFile, `Uppy holds ${file.name}`);
    assert.equal(uppyFile.error, null);
    assert.equal(uppyFile.progress.uploadComplete, true);
    assert.equal(uppyFile.response.status, 200);
    const body = uppyFile.response.body;
    assert.equal(body.files.length, 1);
    const [answer] = body.files;
    assert.match(answer.key, /^[A-Za-z0-9]{30}$/);
    assert.deepEqual(
      { status: answer.status, error: answer.error, bytesUploaded: answer.bytesUploaded, size: answer.size },
      { status: 2, error: -1, bytesUploaded: file.size, size: file.size },
    );
    assert.equal(body.status, undefined, "a success answer has no top-level status");
    keys.add(answer.key);
    // The key Uppy got is the one the status service knows.
    const status = await command(answer.key);
    assert.equal(status.status, 2);
    assert.equal(status.bytesUploaded, file.size);
    // The bytes on disk.
    const stored = fs.readFileSync(path.join(UPLOAD_DIR, file.name));
    assert.equal(sha256(stored), sha256(file.bytes), `${file.name} is stored byte for byte`);
  }
  assert.equal(keys.size, picked.length, "one key per file");

  // The Dashboard marks every file complete, and the page lists the server's answers.
  assert.equal(await page.locator(".uppy-Dashboard-Item.is-complete").count(), picked.length);
  assert.equal(await page.locator("#responses li:not(.failed)").count(), picked.length);
  await screenshot(page, "uppy-complete");
  await page.close();
});

test("Uppy shows the layer's message for an oversize file and nothing is stored", async () => {
  const big = files.make("uppy-oversize.bin", MAX_FILE_SIZE + 100 * 1024);
  const page = await openUppy();
  await addAndUpload(page, [big]);
  const done = await complete(page);
  assert.deepEqual(done.successful, []);
  assert.deepEqual(done.failed, [big.name]);

  const posts = await page.uploadsEnded();
  assert.equal(posts.length, 1, "refused once, not retried");
  assert.equal(posts[0].status, 413);

  const errors = await page.evaluate(() => window.uppyEvents.filter((e) => e.event === "upload-error"));
  assert.deepEqual(errors, [
    { event: "upload-error", name: big.name, message: "file is larger than the 1 MiB limit", status: 413 },
  ]);
  const [held] = await uppyFiles(page);
  assert.equal(held.error, "file is larger than the 1 MiB limit");

  // In the Dashboard: the file is in error, its details carry the layer's message.
  const item = page.locator(".uppy-Dashboard-Item.is-error");
  assert.equal(await item.count(), 1);
  assert.equal(
    await item.locator(".uppy-Dashboard-Item-errorDetails").getAttribute("aria-label"),
    "file is larger than the 1 MiB limit",
  );
  assert.match(await page.locator(".uppy-StatusBar").textContent(), /Upload failed/);
  assert.equal(
    (await page.locator("#responses li.failed").textContent()).trim(),
    `${big.name}: file is larger than the 1 MiB limit`,
  );

  await assertNothingKept(big);
  await screenshot(page, "uppy-oversize");
  await page.close();
});
