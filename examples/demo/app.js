// tower-upload demo page: one XHR per file, progress from the browser and from the status
// service (pushed with an EventSource, polled where that is missing or refused), cancel
// through the status service. No libraries.
"use strict";

(function () {
  const body = document.body;
  const UPLOAD_PATH = body.dataset.uploadPath;
  const STATUS_PATH = body.dataset.statusPath;
  // {"status":{"0":["NotStarted","the upload has not started"],...},"error":{"-1":[...],...}}
  const CODES = JSON.parse(body.dataset.codes);
  const POLL_MS = 300; // also the wait before a stream is opened again
  const KEY_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

  const input = document.getElementById("files");
  const picker = document.getElementById("picker");
  const list = document.getElementById("uploads");
  const empty = document.getElementById("empty");
  const template = document.getElementById("upload-row");

  /** `Finished (2)`; `Unknown (42)` for a code the page does not know. */
  function codeName(table, code) {
    const entry = CODES[table][String(code)];
    return `${entry ? entry[0] : "Unknown"} (${code})`;
  }

  function codeDescription(table, code) {
    const entry = CODES[table][String(code)];
    return entry ? entry[1] : "";
  }

  /** 30 random alphanumerics, as the igUpload widget makes them (but from a proper RNG). */
  function randomKey() {
    let key = "";
    const bytes = new Uint8Array(64);
    while (key.length < 30) {
      crypto.getRandomValues(bytes);
      for (const byte of bytes) {
        // 248 = 4 * 62: drop the rest so that every character is equally likely.
        if (byte < 248 && key.length < 30) key += KEY_CHARS[byte % 62];
      }
    }
    return key;
  }

  function formatBytes(n) {
    if (typeof n !== "number" || !isFinite(n)) return "?";
    const units = [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]];
    for (const [unit, size] of units) {
      if (n >= size) return `${(n / size).toFixed(n % size === 0 ? 0 : 1)} ${unit}`;
    }
    return `${n} B`;
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (_) {
      return null;
    }
  }

  /** `GET {status_path}?key=K&command=C` -> the JSON answer (throws on network errors). */
  async function command(key, name) {
    const url = `${STATUS_PATH}?key=${encodeURIComponent(key)}&command=${name}`;
    const response = await fetch(url, { cache: "no-store" });
    return parseJson(await response.text());
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** One file's upload and its row on the page. */
  class Upload {
    constructor(file) {
      this.file = file;
      this.key = randomKey();
      this.clientBytes = 0;
      this.serverBytes = 0;
      this.done = false;
      this.polling = false;
      this.timer = null;

      const row = template.content.firstElementChild.cloneNode(true);
      this.row = row;
      this.field = (name) => row.querySelector(`[data-field="${name}"]`);
      row.id = `upload-${this.key}`;
      row.dataset.key = this.key;
      row.dataset.name = file.name;
      row.dataset.status = "0";
      row.dataset.error = "-1";
      this.field("name").textContent = file.name;
      this.field("size").textContent = formatBytes(file.size);
      this.field("key").textContent = this.key;
      this.field("progress").max = Math.max(file.size, 1);
      this.field("progress").setAttribute("aria-label", `Upload progress of ${file.name}`);
      this.cancelButton = row.querySelector('[data-action="cancel"]');
      this.cancelButton.setAttribute("aria-label", `Cancel upload of ${file.name}`);
      this.cancelButton.addEventListener("click", () => this.cancel());
      list.append(row);
      empty.hidden = true;
    }

    start() {
      const xhr = new XMLHttpRequest();
      this.xhr = xhr;
      xhr.open("POST", `${UPLOAD_PATH}?key=${this.key}`);
      xhr.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable || event.total === 0) return;
        // `loaded` counts the multipart framing too: scale it to the file's size.
        this.clientBytes = Math.min(this.file.size, Math.round((event.loaded / event.total) * this.file.size));
        this.render();
      });
      xhr.addEventListener("load", () => this.onAnswer(xhr));
      xhr.addEventListener("error", () => this.onNetworkError());
      const form = new FormData();
      form.append("file", this.file, this.file.name);
      xhr.send(form);
      this.setStatus(0, -1);
      this.watch();
    }

    // --- Live progress: `command=watch` (Server-Sent Events), polling as the fallback. ---

    /**
     * Follows the upload with an EventSource on `{status_path}?key=K&command=watch`: one
     * event per change, the last one with id `end`. Until the server has registered the key,
     * the stream answers NoSuchFile (3) and ends: open it again a little later. Polls
     * instead when EventSource is missing, or the stream is refused (503 beyond the server's
     * most streams) or keeps failing.
     */
    watch(attempt = 0) {
      if (this.done) return;
      if (typeof EventSource !== "function" || attempt >= 20) return this.startPolling();
      this.row.dataset.transport = "sse";
      const url = `${STATUS_PATH}?key=${encodeURIComponent(this.key)}&command=watch`;
      const events = new EventSource(url);
      this.events = events;
      events.addEventListener("message", (event) => {
        const answer = parseJson(event.data);
        if (!answer || typeof answer.status !== "number") return;
        if (answer.status === 3) {
          // Not registered yet (or already forgotten): try again shortly.
          events.close();
          this.timer = setTimeout(() => this.watch(attempt + 1), POLL_MS);
          return;
        }
        if (!this.done) this.showServer(answer);
        this.row.dataset.events = String(Number(this.row.dataset.events || "0") + 1);
        if (event.lastEventId === "end") events.close();
      });
      events.addEventListener("error", () => {
        // Closed by the server (an answer that is not a stream): poll instead. Otherwise the
        // EventSource reconnects by itself and gets the current state at once.
        if (events.readyState === EventSource.CLOSED && !this.done) {
          this.startPolling();
        }
      });
    }

    startPolling() {
      if (this.events) this.events.close();
      this.row.dataset.transport = "poll";
      this.poll();
    }

    /** Asks the status service every POLL_MS until the upload's POST is answered. */
    async poll() {
      if (this.done || this.polling) return;
      this.polling = true;
      try {
        const answer = await command(this.key, "status");
        // NoSuchFile (3) only means the server has not registered the key yet.
        if (!this.done && answer && typeof answer.status === "number" && answer.status !== 3) {
          this.showServer(answer);
        }
      } catch (_) {
        // The next poll or the POST's answer will tell.
      } finally {
        this.polling = false;
        if (!this.done) this.timer = setTimeout(() => this.poll(), POLL_MS);
      }
    }

    showServer(answer) {
      this.setStatus(answer.status, answer.error);
      if (typeof answer.bytesUploaded === "number") this.serverBytes = answer.bytesUploaded;
      const size = typeof answer.size === "number" ? answer.size : this.file.size;
      this.row.dataset.serverBytes = String(this.serverBytes);
      this.row.dataset.serverSize = String(size);
      this.field("bytes").textContent = `${formatBytes(this.serverBytes)} of ${formatBytes(size)} on the server`;
      this.render();
    }

    setStatus(status, error) {
      this.row.dataset.status = String(status);
      this.row.dataset.error = String(typeof error === "number" ? error : -1);
      const label = this.field("status");
      label.textContent = codeName("status", status);
      label.title = codeDescription("status", status);
    }

    render() {
      this.field("progress").value = Math.max(this.clientBytes, this.serverBytes);
    }

    async onAnswer(xhr) {
      const answer = parseJson(xhr.responseText);
      if (xhr.status >= 200 && xhr.status < 300) {
        // A success answer never carries a message: the status service has the final word.
        let final = null;
        try {
          final = await command(this.key, "status");
        } catch (_) {
          // Fall back on the POST's own answer.
        }
        this.settle(final && typeof final.status === "number" ? final : answer);
      } else if (answer && typeof answer.status === "number") {
        this.settle(answer);
      } else {
        // A protocol error: {"error":"<code>","message":"<sentence>"}.
        const message = answer && answer.message ? answer.message : `HTTP ${xhr.status} ${xhr.statusText}`;
        this.settle(null, message);
      }
    }

    /** The connection failed before an answer came: ask the status service what happened. */
    async onNetworkError() {
      let final = null;
      try {
        final = await command(this.key, "status");
      } catch (_) {
        // The server is gone.
      }
      this.settle(final, "the connection to the server failed");
    }

    settle(answer, fallback) {
      if (this.done) return;
      this.done = true;
      clearTimeout(this.timer);
      if (this.events) this.events.close();
      this.cancelButton.disabled = true;
      this.cancelButton.hidden = true;
      let state = "failed";
      let text = fallback || "";
      if (answer && typeof answer.status === "number") {
        this.showServer(answer);
        const status = answer.status;
        state = status === 2 ? "finished" : status === 4 || status === 8 ? "canceled" : "failed";
        const error = typeof answer.error === "number" ? answer.error : -1;
        const detail = answer.serverMessage || codeDescription("status", status);
        text = error === -1 ? detail : `${codeName("error", error)}: ${detail}`;
        if (status === 2) this.field("progress").value = this.field("progress").max;
      } else {
        this.field("status").textContent = "Failed";
      }
      this.row.dataset.state = state;
      const message = this.field("message");
      message.textContent = text;
      message.hidden = !text;
      if (state !== "finished") message.setAttribute("role", "alert");
    }

    /** `command=cancel`: the server stops the upload and answers its POST with 409, status 4. */
    async cancel() {
      if (this.done) return;
      this.cancelButton.disabled = true;
      this.cancelButton.textContent = "Canceling…";
      // Until the server has registered the key it answers NoSuchFile (3): ask again.
      for (let attempt = 0; attempt < 20 && !this.done; attempt += 1) {
        let answer = null;
        try {
          answer = await command(this.key, "cancel");
        } catch (_) {
          // Try again.
        }
        if (answer && typeof answer.status === "number" && answer.status !== 3) return;
        await sleep(150);
      }
    }
  }

  function uploadAll(files) {
    for (const file of files) new Upload(file).start();
  }

  input.addEventListener("change", () => {
    uploadAll(Array.from(input.files));
    input.value = "";
  });
  picker.addEventListener("submit", (event) => event.preventDefault());
  picker.addEventListener("dragover", (event) => {
    event.preventDefault();
    picker.classList.add("dragging");
  });
  picker.addEventListener("dragleave", () => picker.classList.remove("dragging"));
  picker.addEventListener("drop", (event) => {
    event.preventDefault();
    picker.classList.remove("dragging");
    uploadAll(Array.from(event.dataTransfer.files));
  });
})();
