// The demo's own page at `/` (plain XHR + the status service, no libraries) against the demo
// server. Run with tests/browser/run.sh.

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

async function openDemo({ uploadThroughput } = {}) {
  const page = await newPage(browser.context);
  if (uploadThroughput) await throttle(page, uploadThroughput);
  await page.goto(`${BASE}/`);
  return page;
}

/** The row of the upload of `name`: its state, status, error, message and progress. */
function row(page, name) {
  return page.evaluate((name) => {
    const row = [...document.querySelectorAll("#uploads .upload")].find((r) => r.dataset.name === name);
    if (!row) return null;
    const field = (f) => row.querySelector(`[data-field="${f}"]`);
    return {
      key: row.dataset.key,
      state: row.dataset.state,
      status: row.dataset.status,
      error: row.dataset.error,
      serverBytes: Number(row.dataset.serverBytes || 0),
      statusText: field("status").textContent,
      bytesText: field("bytes").textContent,
      message: field("message").hidden ? "" : field("message").textContent,
      progress: field("progress").value,
      max: field("progress").max,
      cancelDisabled: row.querySelector('[data-action="cancel"]').disabled,
    };
  }, name);
}

/**
 * Samples the row every 100 ms until it leaves the `uploading` state; `onSample(sample)` may
 * look at each sample on the way.
 */
async function watch(page, name, { timeout = 20000, onSample } = {}) {
  const samples = [];
  const last = await waitFor(
    async () => {
      const now = await row(page, name);
      if (now) {
        samples.push(now);
        await onSample?.(now);
      }
      return now && now.state !== "uploading" ? now : null;
    },
    { timeout, what: `the upload of ${name} to end` },
  );
  return { last, samples };
}

describe("demo page", () => {
  test("upload with progress from the browser and the status service, to Finished", async () => {
    const file = files.make("page-progress.bin", 900 * 1024);
    const page = await openDemo({ uploadThroughput: 300 * 1024 });
    const statusAnswers = [];
    page.on("response", async (response) => {
      if (response.url().includes("command=status")) statusAnswers.push(await response.json());
    });
    await page.setInputFiles("#files", file.path);
    let midway = false;
    const { last, samples } = await watch(page, file.name, {
      async onSample(sample) {
        if (!midway && sample.state === "uploading" && sample.serverBytes > 0) {
          midway = true;
          await screenshot(page, "demo-progress-midway");
        }
      },
    });

    assert.equal(last.state, "finished", JSON.stringify(last));
    assert.equal(last.status, "2");
    assert.equal(last.statusText, "Finished (2)");
    assert.equal(last.progress, last.max);
    assert.equal(last.serverBytes, file.size);
    assert.match(last.bytesText, /900 KiB of 900 KiB on the server/);
    assert.ok(last.cancelDisabled);
    assert.ok(
      samples.some((s) => s.progress > 0 && s.progress < s.max),
      "the bar moved through the middle",
    );
    assert.ok(samples.some((s) => s.statusText === "Started (1)"), "Started (1) was shown");
    // Pushed (command=watch) or polled (command=status): the page showed the server's count.
    assert.ok(
      statusAnswers.some((a) => a.status === 1 && a.bytesUploaded > 0 && a.bytesUploaded < file.size) ||
        samples.some((s) => s.status === "1" && s.serverBytes > 0 && s.serverBytes < file.size),
      "the status service reported bytes in the middle of the upload",
    );

    const [upload] = await page.uploadsEnded();
    assert.equal(upload.keys[0], last.key);
    assert.match(upload.url, /\/upload\?key=[A-Za-z0-9]{30}$/);
    assert.equal(upload.status, 200);
    assertStored(file);
    await screenshot(page, "demo-progress");
    await page.close();
  });

  test("several files at once all finish", async () => {
    const batch = [1, 2, 3].map((n) => files.make(`page-many-${n}.txt`, 10 * 1024 * n));
    const page = await openDemo();
    await page.setInputFiles("#files", batch.map((f) => f.path));
    for (const file of batch) {
      const { last } = await watch(page, file.name);
      assert.equal(last.state, "finished", JSON.stringify(last));
      assertStored(file);
    }
    assert.equal((await page.uploadsEnded()).length, 3, "one POST per file");
    await screenshot(page, "demo-several");
    await page.close();
  });

  test("a file over the limit shows FileSizeExceeded and the server's message", async () => {
    const file = files.make("page-oversize.bin", MAX_FILE_SIZE + 100 * 1024);
    const page = await openDemo();
    await page.setInputFiles("#files", file.path);
    const { last } = await watch(page, file.name);
    assert.equal(last.state, "failed", JSON.stringify(last));
    assert.equal(last.statusText, "FileSizeExceeded (5)");
    assert.equal(last.error, "2");
    assert.equal(last.message, "FileSizeExceeded (2): file is larger than the 1 MiB limit");
    await assertNothingKept(file);
    await screenshot(page, "demo-oversize");
    await page.close();
  });

  test("Cancel sends command=cancel: the POST ends with 409, status 4 is shown, nothing kept", async () => {
    const file = files.make("page-cancel.bin", 900 * 1024);
    const page = await openDemo({ uploadThroughput: 64 * 1024 });
    const cancels = [];
    page.on("request", (request) => {
      if (request.url().includes("command=cancel")) cancels.push(request.url());
    });
    await page.setInputFiles("#files", file.path);
    const started = await waitFor(
      async () => {
        const now = await row(page, file.name);
        return now && now.status === "1" ? now : null;
      },
      { what: "Started (1) on the page" },
    );
    await page.click(`#upload-${started.key} [data-action="cancel"]`);
    const { last } = await watch(page, file.name);

    assert.ok(cancels.length >= 1, "the page sent command=cancel");
    assert.match(cancels[0], new RegExp(`/status\\?key=${started.key}&command=cancel$`));
    assert.equal(last.state, "canceled", JSON.stringify(last));
    assert.equal(last.status, "4");
    assert.equal(last.statusText, "CanceledByClientCommand (4)");
    assert.equal(last.message, "the upload was canceled");
    assert.equal((await page.uploadsEnded())[0].status, 409, "the POST's answer");
    const answer = await command(started.key);
    assert.equal(answer.status, 4, JSON.stringify(answer));
    await assertNothingKept(file);
    await screenshot(page, "demo-cancel");
    await page.close();
  });
});
