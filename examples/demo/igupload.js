// Sets up the igUpload widget on /igupload from the query string, and records its events in
// `window.igEvents` (read by the browser tests) and in the list on the page.
"use strict";

(function () {
  const body = document.body;
  const query = new URLSearchParams(location.search);

  /** A query-string option: `true`/`false`, an integer, or the text itself. */
  function option(name, fallback) {
    const value = query.get(name);
    if (value === null || value === "") return fallback;
    if (value === "true") return true;
    if (value === "false") return false;
    if (/^-?\d+$/.test(value)) return parseInt(value, 10);
    return value;
  }

  const mode = option("mode", "multiple");
  const options = {
    mode: mode,
    multipleFiles: option("multiple", mode === "multiple"),
    autostartupload: option("autostartupload", true),
    useSingleRequest: option("useSingleRequest", false),
    maxSimultaneousFilesUploads: option("maxSimultaneousFilesUploads", 1),
    maxUploadedFiles: option("maxUploadedFiles", -1),
    controlId: option("controlId", ""),
    uploadUrl: body.dataset.uploadPath,
    progressUrl: body.dataset.statusPath,
  };
  document.getElementById("options").textContent = JSON.stringify(options);

  window.igEvents = [];
  const log = document.getElementById("events");

  /** A copy of the event's `ui` argument without the DOM, XHR and FormData objects. */
  function plain(ui) {
    const copy = {};
    for (const name of Object.keys(ui || {})) {
      const value = ui[name];
      if (name === "owner" || name === "xhr" || name === "formData") continue;
      if (name === "fileInfo") {
        const pick = (info) => info && {
          key: info.key,
          status: info.status,
          serverMessage: info.serverMessage,
          sizeBytes: info.sizeBytes,
          uploadedBytes: info.uploadedBytes,
        };
        copy.fileInfo = Array.isArray(value) ? value.map(pick) : pick(value);
        continue;
      }
      copy[name] = value;
    }
    return copy;
  }

  function record(name) {
    return function (event, ui) {
      const args = plain(ui);
      window.igEvents.push({ event: name, time: Date.now(), args: args });
      const item = document.createElement("li");
      item.dataset.event = name;
      item.textContent = `${name} ${JSON.stringify(args)}`;
      log.append(item);
    };
  }

  const events = [
    "fileSelecting", "fileSelected", "fileUploading", "fileUploaded", "fileUploadAborted",
    "cancelAllClicked", "onError", "onXHRLoad", "onFormDataSubmit",
  ];
  for (const name of events) options[name] = record(name);

  $("#upload").igUpload(options);
  window.igReady = true;
})();
