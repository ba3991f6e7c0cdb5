// Shared helpers of the Node tests: the demo server as a child process, waiting, hashing.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';

export const demo = resolve(process.env.TOWER_UPLOAD_DEMO ?? '../../target/debug/examples/demo');

export async function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
    server.on('error', fail);
  });
}

/** Starts the demo on `port` storing into `dir`; resolves once it listens. */
export async function startServer(port, dir, extra = []) {
  const child = spawn(demo, ['--addr', `127.0.0.1:${port}`, '--upload-dir', dir, '--max-file-size', '64MiB', ...extra], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((ok, fail) => {
    let out = '';
    child.stdout.on('data', (data) => {
      out += data;
      if (out.includes('resumable (tus 1.0) uploads at')) ok();
    });
    child.on('exit', (code) => fail(new Error(`demo exited with ${code}: ${out}`)));
  });
  return child;
}

export async function stopServer(child) {
  const exited = new Promise((ok) => child.on('exit', ok));
  child.kill('SIGKILL');
  await exited;
}

export const sha = (data) => createHash('sha256').update(data).digest('hex');

export async function waitFor(what, check, ms = 10000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((ok) => setTimeout(ok, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Deterministic bytes (xorshift32), the same in Node and in the page. */
export function pattern(length, seed) {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
