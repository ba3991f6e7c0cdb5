// The real, unmodified Ignite UI igUpload widget (npm `ignite-ui`) against the demo server:
// `/igupload?<options>` sets the widget up with uploadUrl=/upload, progressUrl=/status and
// records its events in `window.igEvents`. Run with tests/browser/run.sh.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  BASE,
  MAX_FILE_SIZE,
  assertNothingKept,
  assertStored,
  command,
  fileFactory,
  launch,
  newPage,
  screenshot,
  throttle,
  waitFor,
} from "./lib.mjs";

/** The widget's element id on /igupload: its inputs are `#upload_ibb_fp`, `#upload_bb_fp`. */
const ID = "upload";

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

/** Opens /igupload with `options` and waits for the widget. */
async function openWidget(options, { uploadThroughput } = {}) {
  const page = await newPage(browser.context);
  if (uploadThroughput) await throttle(page, uploadThroughput);
  const query = new URLSearchParams(options).toString();
  await page.goto(`${BASE}/igupload?${query}`);
  await page.waitForFunction(() => window.igReady === true);
  return page;
}

const events = (page, name) =>
  page.evaluate((name) => window.igEvents.filter((e) => e.event === name), name);

/** Waits until the widget fired `name` at least `count` times; fails early on `onError`. */
async function waitForEvents(page, name, count = 1, timeout = 20000) {
  return waitFor(
    async () => {
      const errors = name === "onError" ? [] : await events(page, "onError");
      if (errors.length > 0) throw new Error(`widget onError: ${JSON.stringify(errors)}`);
      const fired = await events(page, name);
      return fired.length >= count ? fired : null;
    },
    { timeout, what: `${count} × ${name}` },
  );
}

describe("igUpload widget", () => {
  test("single file: progress, then finished, stored with the same bytes", async () => {
    const file = files.make("widget-single.bin", 700 * 1024);
    const page = await openWidget(
      { mode: "single", autostartupload: "true" },
      { uploadThroughput: 350 * 1024 },
    );
    await page.setInputFiles(`#${ID}_ibb_fp`, file.path);
    const [uploaded] = await waitForEvents(page, "fileUploaded");
    assert.equal(uploaded.args.totalSize, file.size);

    const progress = (await events(page, "fileUploading")).filter((e) => e.args.fileStatus === 1);
    assert.ok(progress.length >= 2, `several progress events (${progress.length})`);
    assert.ok(
      progress.some((e) => e.args.uploadedBytes > 0 && e.args.uploadedBytes < file.size),
      "a progress event in the middle of the upload",
    );

    await page.uploadsEnded();
    assert.equal(page.uploads.length, 1);
    const [key] = page.uploads[0].keys;
    assert.equal(key.length, 30);
    assert.match(page.uploads[0].url, /\/upload\?key=\w{30}&cid=&multiple=true$/);
    assert.equal(page.uploads[0].status, 200);
    const answer = await command(key);
    assert.equal(answer.status, 2, JSON.stringify(answer));
    assert.equal(answer.bytesUploaded, file.size);
    assertStored(file);
    await screenshot(page, "igupload-single");
    await page.close();
  });

  test("mode multiple: four files, at most two at a time", async () => {
    const batch = [1, 2, 3, 4].map((n) => files.make(`widget-multi-${n}.bin`, 150 * 1024 + n));
    const page = await openWidget(
      {
        mode: "multiple",
        multiple: "true",
        autostartupload: "true",
        maxSimultaneousFilesUploads: "2",
      },
      { uploadThroughput: 600 * 1024 },
    );
    await page.setInputFiles(`#${ID}_ibb_fp`, batch.map((f) => f.path));
    await waitForEvents(page, "fileUploaded", batch.length);

    await page.uploadsEnded();
    assert.equal(page.uploads.length, batch.length, "one POST per file");
    // The most POSTs in flight at once.
    const edges = page.uploads.flatMap((u) => [[u.start, 1], [u.end, -1]]);
    edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let inFlight = 0;
    let most = 0;
    for (const [, step] of edges) most = Math.max(most, (inFlight += step));
    assert.equal(most, 2, "two uploads ran side by side, never more");

    for (const upload of page.uploads) {
      assert.equal(upload.status, 200);
      assert.equal((await command(upload.keys[0])).status, 2);
    }
    batch.forEach(assertStored);
    await page.waitForFunction((id) => /4.*4/.test(document.getElementById(`${id}_summplbl`)?.textContent || ""), ID);
    await screenshot(page, "igupload-multiple");
    await page.close();
  });

  test("useSingleRequest: three files in one POST with key=K1;K2;K3", async () => {
    const batch = [1, 2, 3].map((n) => files.make(`widget-batch-${n}.txt`, 20 * 1024 * n));
    const page = await openWidget({
      mode: "multiple",
      multiple: "true",
      autostartupload: "true",
      useSingleRequest: "true",
    });
    await page.setInputFiles(`#${ID}_ibb_fp`, batch.map((f) => f.path));
    await waitForEvents(page, "fileUploaded", batch.length);

    await page.uploadsEnded();
    assert.equal(page.uploads.length, 1, "one POST for the batch");
    const [upload] = page.uploads;
    assert.match(upload.url, /\?key=\w{30};\w{30};\w{30}&/);
    assert.equal(upload.keys.length, 3);
    assert.equal(upload.status, 200);
    for (const key of upload.keys) {
      const answer = await command(key);
      assert.equal(answer.status, 2, JSON.stringify(answer));
    }
    batch.forEach(assertStored);
    await screenshot(page, "igupload-single-request");
    await page.close();
  });

  test("a file over --max-file-size ends in onError with error 2 and the server's message", async () => {
    const file = files.make("widget-oversize.bin", MAX_FILE_SIZE + 512 * 1024);
    const page = await openWidget({ mode: "single", autostartupload: "true" });
    await page.setInputFiles(`#${ID}_ibb_fp`, file.path);
    const [error] = await waitForEvents(page, "onError");
    assert.equal(error.args.errorType, "serverside");
    assert.equal(error.args.errorCode, 2);
    assert.match(error.args.serverMessage, /larger than the 1 MiB limit/);
    assert.equal((await events(page, "fileUploaded")).length, 0);

    const [key] = page.uploads[0].keys;
    const answer = await command(key);
    assert.equal(answer.status, 5, JSON.stringify(answer));
    assert.equal(answer.error, 2);
    await assertNothingKept(file);
    await screenshot(page, "igupload-oversize");
    await page.close();
  });

  test("a veto from upload_starting reaches onError with its message", async () => {
    const file = files.make("veto-widget.txt", 4 * 1024);
    const page = await openWidget({ mode: "single", autostartupload: "true" });
    await page.setInputFiles(`#${ID}_ibb_fp`, file.path);
    const [error] = await waitForEvents(page, "onError");
    assert.equal(error.args.errorType, "serverside");
    assert.equal(error.args.errorCode, 10);
    assert.equal(error.args.serverMessage, "the demo refuses files named veto*");

    const [key] = page.uploads[0].keys;
    const answer = await command(key);
    assert.equal(answer.status, 7, JSON.stringify(answer));
    assert.equal(answer.error, 10);
    await assertNothingKept(file);
    await screenshot(page, "igupload-veto");
    await page.close();
  });

  test("cancel (xhr.abort) mid-upload: the server records a disconnect, keeps nothing", async () => {
    const file = files.make("widget-cancel.bin", 900 * 1024);
    // Slow enough to be mid-body for several seconds.
    const page = await openWidget({ mode: "single", autostartupload: "true" }, { uploadThroughput: 64 * 1024 });
    await page.setInputFiles(`#${ID}_ibb_fp`, file.path);
    const upload = await waitFor(() => page.uploads[0], { what: "the upload POST" });
    const [key] = upload.keys;
    await waitFor(async () => (await command(key)).status === 1, { what: "status 1 (Started)" });

    await page.click(`#${ID}_0__cbtn`);
    const [aborted] = await waitForEvents(page, "fileUploadAborted");
    assert.equal(aborted.args.status, 4, "the widget's own Canceled status");
    // In Chromium the widget only aborts the XHR: no command=cancel is sent.
    const answer = await waitFor(
      async () => {
        const answer = await command(key);
        return answer.status === 8 ? answer : null;
      },
      { timeout: 10000, what: "status 8 (CanceledByClientConnection)" },
    );
    assert.equal(answer.error, -1);
    assert.ok(answer.bytesUploaded < file.size);
    await assertNothingKept(file);
    await screenshot(page, "igupload-cancel");
    await page.close();
  });
});
