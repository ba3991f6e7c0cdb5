// The demo's plain HTML form at /form, in Chromium with JavaScript disabled: the browser
// posts multipart/form-data to /form/upload (an UploadService with redirect_to("/uploaded")),
// follows the 303 and shows /uploaded, which the server renders from the registry.
// Run with tests/browser/run.sh.

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
} from "./lib.mjs";

let browser;
let files;

before(async () => {
  browser = await launch({ javaScriptEnabled: false });
  files = fileFactory();
});

after(async () => {
  await browser?.close();
  files?.cleanup();
});

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

/**
 * Opens /form, picks `picked`, types `note` and submits; resolves once /uploaded is shown, with
 * the form POST's status and where it went.
 */
async function submit(picked, note) {
  const page = await newPage(browser.context);
  const posts = [];
  page.on("response", (response) => {
    const request = response.request();
    if (request.method() === "POST" && new URL(request.url()).pathname === "/form/upload") {
      posts.push({
        status: response.status(),
        location: response.headers().location,
        navigation: request.isNavigationRequest(),
      });
    }
  });
  await page.goto(`${BASE}/form`);
  // No script runs on this page: the form's own submission is all there is.
  assert.equal(await page.locator("script").count(), 0);
  await page.locator("#files").setInputFiles(picked.map((f) => f.path));
  await page.locator("#note").fill(note);
  await Promise.all([page.waitForURL(/\/uploaded\?/, { timeout: 20000 }), page.locator("#submit").click()]);
  assert.equal(posts.length, 1, "one form POST");
  assert.equal(posts[0].status, 303);
  assert.ok(posts[0].navigation, "the POST is the page's own navigation, not a script's request");
  return { page, post: posts[0] };
}

/** The rows of /uploaded, read through the DOM (no script runs in the page itself). */
async function rows(page) {
  const result = [];
  for (const row of await page.locator("#results tbody tr[data-key]").all()) {
    result.push({
      key: await row.getAttribute("data-key"),
      status: await row.getAttribute("data-status"),
      error: await row.getAttribute("data-error"),
      bytes: Number(await row.getAttribute("data-bytes")),
      name: (await row.locator(".name").textContent()).trim(),
      statusText: (await row.locator(".status").textContent()).trim(),
      message: (await row.locator(".message").textContent()).trim(),
    });
  }
  return result;
}

test("the form uploads two files without JavaScript and /uploaded lists both as finished", async () => {
  const picked = [files.make("form-one.bin", 200 * 1024 + 7), files.make("form-two.txt", 64 * 1024)];
  const { page } = await submit(picked, "two files, no script");
  const url = new URL(page.url());
  assert.equal(url.pathname, "/uploaded");
  assert.equal(url.searchParams.get("status"), null, "no failure in the redirect");
  const keys = url.searchParams.get("keys").split(";");
  assert.equal(keys.length, 2);

  const listed = await rows(page);
  assert.deepEqual(
    listed.map((r) => [r.key, r.name, r.status, r.error, r.statusText]),
    [
      [keys[0], "form-one.bin", "2", "-1", "Finished (2)"],
      [keys[1], "form-two.txt", "2", "-1", "Finished (2)"],
    ],
  );
  assert.equal(await page.locator("#failure").count(), 0);
  for (const [i, file] of picked.entries()) {
    assert.equal(listed[i].bytes, file.size);
    const stored = fs.readFileSync(path.join(UPLOAD_DIR, file.name));
    assert.equal(sha256(stored), sha256(file.bytes), `${file.name} is stored byte for byte`);
    // The status service knows the same keys.
    const status = await command(keys[i]);
    assert.equal(status.status, 2);
    assert.equal(status.bytesUploaded, file.size);
  }
  await screenshot(page, "form-uploaded");

  // The form page itself, for the record.
  await page.goto(`${BASE}/form`);
  await screenshot(page, "form");
  await page.close();
});

test("an oversize file lands on /uploaded with the layer's refusal and nothing is kept", async () => {
  const big = files.make("form-oversize.bin", MAX_FILE_SIZE + 100 * 1024);
  const { page } = await submit([big], "too big");
  const url = new URL(page.url());
  assert.equal(url.searchParams.get("status"), "5");
  assert.equal(url.searchParams.get("error"), "2");

  const failure = page.locator("#failure");
  assert.equal(await failure.getAttribute("data-status"), "5");
  assert.match(await failure.textContent(), /FileSizeExceeded \(5\)/);
  const [row] = await rows(page);
  assert.equal(row.name, "form-oversize.bin");
  assert.equal(row.status, "5");
  assert.equal(row.error, "2");
  assert.equal(row.message, "file is larger than the 1 MiB limit");
  assert.ok(row.bytes <= MAX_FILE_SIZE, `stopped at the limit: ${row.bytes}`);
  await assertNothingKept(big);
  await screenshot(page, "form-oversize");
  await page.close();
});
