// The demo's /metrics endpoint, after the browser suites ran against the same server: the
// registry's counters in Prometheus' text format reflect what those uploads did.
import { test } from "node:test";
import assert from "node:assert/strict";

import { BASE } from "./lib.mjs";

function counter(text, name) {
  const line = text.split("\n").find((line) => line.startsWith(name + " "));
  assert.ok(line, `${name} is exported:\n${text}`);
  return Number(line.slice(name.length + 1));
}

test("metrics count the uploads the other suites made", async () => {
  const response = await fetch(`${BASE}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type"), /^text\/plain/);
  const text = await response.text();
  const started = counter(text, "tower_upload_uploads_started_total");
  const finished = counter(text, 'tower_upload_uploads_ended_total{status="finished"}');
  const tooLarge = counter(text, 'tower_upload_uploads_ended_total{status="file_size_exceeded"}');
  const vetoed = counter(text, 'tower_upload_uploads_ended_total{status="canceled_by_event"}');
  const aborted = counter(text, 'tower_upload_uploads_ended_total{status="canceled_by_client_connection"}');
  assert.ok(finished >= 8, `finished: ${finished}`);
  assert.ok(tooLarge >= 2, `too large: ${tooLarge}`);
  assert.equal(vetoed, 1);
  assert.ok(aborted >= 1, `aborted: ${aborted}`);
  assert.ok(started >= finished + tooLarge + vetoed + aborted);
  assert.ok(counter(text, "tower_upload_bytes_received_total") > 0);
  assert.equal(counter(text, "tower_upload_in_flight"), 0);
});
