// Uppy (Dashboard + Tus, the `uppy` 6 bundle) in headless Debian Chromium against the demo's
// /files/: several files, one paused mid-upload and resumed, bytes verified on disk.
//
// The page comes from a small Node server on another port, so it is another origin than the
// demo: the uploads go through the README's CORS set-up (the demo's --cors-origin), with
// preflights, credentials and tus' exposed headers. A page of an origin not allowed fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { freePort, pattern, sha, startServer, stopServer } from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const dist = resolve('node_modules/uppy/dist');

const PAGE = `<!doctype html>
<meta charset="utf-8">
<link rel="stylesheet" href="/uppy.min.css">
<div id="dashboard"></div>
<script type="module">
  import { Uppy, Dashboard, Tus } from '/uppy.min.mjs';
  ${pattern.toString()}
  const endpoint = new URLSearchParams(location.search).get('endpoint');
  const uppy = new Uppy({ autoProceed: false })
    .use(Dashboard, { inline: true, target: '#dashboard' })
    .use(Tus, { endpoint, chunkSize: 64 * 1024, retryDelays: [0, 300, 1000], withCredentials: true });
  window.uppy = uppy;
  window.pattern = pattern;
  window.ready = true;
</script>`;

function pageServer() {
  return http.createServer((req, res) => {
    if (req.url === '/' || req.url.startsWith('/?')) {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(PAGE);
    }
    if (req.url === '/uppy.min.mjs' || req.url === '/uppy.min.css') {
      const type = req.url.endsWith('.css') ? 'text/css' : 'text/javascript';
      res.writeHead(200, { 'content-type': type });
      return res.end(readFileSync(join(dist, req.url.slice(1))));
    }
    res.writeHead(404);
    res.end();
  });
}

const skip = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (tests/browser/run.sh installs Debian's chromium)`;

test('Uppy Dashboard + Tus in Chromium: several files, one paused and resumed', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tus-uppy-'));
  const pages = pageServer();
  await new Promise((ok) => pages.listen(0, '127.0.0.1', ok));
  const stranger = pageServer();
  await new Promise((ok) => stranger.listen(0, '127.0.0.1', ok));
  const pageOrigin = `http://127.0.0.1:${pages.address().port}`;
  const demoPort = await freePort();
  const server = await startServer(demoPort, dir, ['--cors-origin', pageOrigin]);
  const endpoint = encodeURIComponent(`http://127.0.0.1:${demoPort}/files/`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  t.after(async () => {
    await browser.close();
    pages.close();
    stranger.close();
    await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
  });

  const page = await browser.newPage();
  const methods = [];
  page.on('request', (request) => {
    if (new URL(request.url()).pathname.startsWith('/files')) methods.push(request.method());
  });
  page.on('pageerror', (error) => console.error('page error:', error));
  await page.goto(`${pageOrigin}/?endpoint=${endpoint}`);
  await page.waitForFunction(() => window.ready === true);
  assert.notEqual(new URL(page.url()).port, String(demoPort), 'the page is another origin');

  const files = [
    { name: 'small.bin', size: 200 * 1024 + 5, seed: 1 },
    { name: 'medium.bin', size: 900 * 1024, seed: 2 },
    { name: 'big.bin', size: 2 * 1024 * 1024 + 333, seed: 3 },
  ];
  const result = await page.evaluate(async (files) => {
    const uppy = window.uppy;
    for (const file of files) {
      uppy.addFile({ name: file.name, type: 'application/octet-stream', data: new Blob([window.pattern(file.size, file.seed)]) });
    }
    // Pause the big file once a third of it is in, resume it shortly after.
    let paused = false;
    uppy.on('upload-progress', (file, progress) => {
      if (file.name === 'big.bin' && !paused && progress.bytesUploaded > 700 * 1024) {
        paused = true;
        uppy.pauseResume(file.id);
        setTimeout(() => uppy.pauseResume(file.id), 400);
      }
    });
    const outcome = await uppy.upload();
    return {
      paused,
      successful: outcome.successful.map((file) => file.name).sort(),
      failed: outcome.failed.map((file) => `${file.name}: ${file.error}`),
    };
  }, files);

  assert.deepEqual(result.failed, []);
  assert.deepEqual(result.successful, ['big.bin', 'medium.bin', 'small.bin']);
  assert.ok(result.paused, 'the big file was paused mid-upload');
  assert.ok(methods.includes('HEAD'), `the paused upload resumed with HEAD (${[...new Set(methods)]})`);
  for (const file of files) {
    assert.equal(sha(readFileSync(join(dir, file.name))), sha(pattern(file.size, file.seed)), file.name);
  }

  // A page of an origin the demo does not allow: the browser refuses the cross-origin
  // request (no CORS answer for it), and nothing is stored.
  const other = await browser.newPage();
  await other.goto(`http://127.0.0.1:${stranger.address().port}/?endpoint=${endpoint}`);
  await other.waitForFunction(() => window.ready === true);
  const refused = await other.evaluate(async () => {
    const uppy = window.uppy;
    uppy.getPlugin('Tus').setOptions({ retryDelays: [] });
    uppy.addFile({ name: 'stranger.bin', type: 'application/octet-stream', data: new Blob([window.pattern(1000, 9)]) });
    const outcome = await uppy.upload();
    return { successful: outcome.successful.length, failed: outcome.failed.length };
  });
  assert.deepEqual(refused, { successful: 0, failed: 1 });
  assert.ok(!existsSync(join(dir, 'stranger.bin')));
});
