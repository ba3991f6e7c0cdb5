// tus-js-client (Node) against the demo server's /files/ endpoint: upload, pause and resume
// with a stored fingerprint, resume after the server process restarts, parallel uploads
// (concatenation), the IETF draft (interop 6 and 5), termination.
//
// Run with scripts/test-node (it builds the demo and installs tus-js-client), or:
//   TOWER_UPLOAD_DEMO=target/debug/examples/demo node --test tests/node/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import * as tus from 'tus-js-client';
import { freePort, sha, startServer, stopServer, waitFor } from './lib.mjs';

/** Runs an upload to its end; `options.onProgress` may abort it. */
function run(upload) {
  return new Promise((ok, fail) => {
    upload.options.onSuccess = () => ok(upload);
    upload.options.onError = fail;
    upload.start();
  });
}

test('tus-js-client uploads, pauses and resumes, survives a restart, terminates', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tus-node-'));
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}/files/`;
  let server = await startServer(port, dir);
  t.after(async () => {
    if (server) await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
  });

  await t.test('a plain upload in several PATCHes', async () => {
    const data = randomBytes(1024 * 1024 + 17);
    const upload = new tus.Upload(data, {
      endpoint,
      chunkSize: 256 * 1024,
      metadata: { filename: 'plain.bin', filetype: 'application/octet-stream' },
    });
    await run(upload);
    assert.match(upload.url, /\/files\/[A-Za-z0-9]{32}$/);
    assert.equal(sha(readFileSync(join(dir, 'plain.bin'))), sha(data));
    const status = await (await fetch(`http://127.0.0.1:${port}/status?key=${upload.url.split('/').pop()}&command=status`)).json();
    assert.equal(status.status, 2);
    assert.equal(status.bytesUploaded, data.length);
  });

  await t.test('parallel uploads (concatenation)', async () => {
    const data = randomBytes(1536 * 1024 + 3);
    const upload = new tus.Upload(data, {
      endpoint,
      parallelUploads: 3,
      chunkSize: 128 * 1024,
      metadata: { filename: 'parallel.bin', filetype: 'application/octet-stream' },
    });
    await run(upload);
    assert.equal(sha(readFileSync(join(dir, 'parallel.bin'))), sha(data));
  });

  for (const protocol of ['ietf-draft-05', 'ietf-draft-03']) {
    await t.test(`the IETF draft: tus-js-client with protocol ${protocol}`, async () => {
      const data = randomBytes(700 * 1024 + 1);
      const name = `draft-${protocol}.bin`;
      const upload = new tus.Upload(data, {
        endpoint,
        protocol,
        chunkSize: 256 * 1024,
        metadata: { filename: name },
      });
      await run(upload);
      assert.equal(sha(readFileSync(join(dir, name))), sha(data));
    });
  }

  const storage = new tus.FileUrlStorage(join(dir, 'urls.json'));
  const resumeOptions = (name, data, extra = {}) => ({
    endpoint,
    chunkSize: 64 * 1024,
    metadata: { filename: name },
    urlStorage: storage,
    fingerprint: async () => `fp-${name}-${data.length}`,
    retryDelays: [0, 200, 500],
    ...extra,
  });

  /** Starts an upload and aborts it (tus-js-client's pause) after `atLeast` bytes. */
  async function startAndPause(name, data, atLeast) {
    const upload = new tus.Upload(data, resumeOptions(name, data));
    let reached = 0;
    await new Promise((ok, fail) => {
      upload.options.onProgress = (sent) => {
        if (sent >= atLeast && !reached) {
          reached = sent;
          upload.abort().then(ok, fail);
        }
      };
      upload.options.onError = fail;
      upload.options.onSuccess = () => fail(new Error('finished before the pause'));
      upload.start();
    });
    return upload;
  }

  /** A new Upload for the same data, resumed from the stored fingerprint. */
  async function resume(name, data) {
    const upload = new tus.Upload(data, resumeOptions(name, data));
    const previous = await upload.findPreviousUploads();
    assert.equal(previous.length, 1, 'the stored upload is found');
    upload.resumeFromPreviousUpload(previous[0]);
    let first = null;
    upload.options.onProgress = (sent) => {
      if (first === null) first = sent;
    };
    await run(upload);
    return { upload, first };
  }

  await t.test('pause, then resume with a new Upload from the stored fingerprint', async () => {
    const data = randomBytes(2 * 1024 * 1024);
    const paused = await startAndPause('paused.bin', data, 300 * 1024);
    const id = paused.url.split('/').pop();
    await waitFor('the paused offset', async () => {
      const status = await (await fetch(`http://127.0.0.1:${port}/status?key=${id}&command=status`)).json();
      return status.status === 1 && status.bytesUploaded >= 256 * 1024;
    });
    const { upload, first } = await resume('paused.bin', data);
    assert.equal(upload.url, paused.url, 'the same upload goes on');
    assert.ok(first > 64 * 1024, `resumed from an offset, not from 0 (first progress ${first})`);
    assert.equal(sha(readFileSync(join(dir, 'paused.bin'))), sha(data));
  });

  await t.test('resume after the server process restarts', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const paused = await startAndPause('restart.bin', data, 500 * 1024);
    await stopServer(server);
    server = null;
    server = await startServer(port, dir);
    const { upload, first } = await resume('restart.bin', data);
    assert.equal(upload.url, paused.url);
    assert.ok(first > 64 * 1024, `resumed from an offset after the restart (first progress ${first})`);
    assert.equal(sha(readFileSync(join(dir, 'restart.bin'))), sha(data));
  });

  await t.test('termination', async () => {
    const data = randomBytes(1024 * 1024);
    const paused = await startAndPause('terminated.bin', data, 100 * 1024);
    await tus.Upload.terminate(paused.url, { retryDelays: [] });
    const head = await fetch(paused.url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
    assert.equal(head.status, 404);
    assert.ok(!existsSync(join(dir, 'terminated.bin')));
    const id = paused.url.split('/').pop();
    const status = await (await fetch(`http://127.0.0.1:${port}/status?key=${id}&command=status`)).json();
    assert.equal(status.status, 4);
  });
});
