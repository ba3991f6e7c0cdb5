// /uppy: Uppy's Dashboard and XHR upload against the upload layer, keyless (the layer makes
// the keys). `window.uppy` and `window.uppyEvents` are there for the browser tests.
(() => {
  "use strict";

  const uploadPath = document.body.dataset.uploadPath;
  window.uppyEvents = [];
  if (!window.Uppy || document.body.hasAttribute("data-missing")) {
    document.getElementById("uppy-missing").hidden = false;
    return;
  }
  const { Uppy, Dashboard, XHRUpload } = window.Uppy;

  /** The layer's failure answer: `{"status":5,"error":2,"serverMessage":"…","files":[…]}`. */
  function refusal(xhr) {
    try {
      const answer = JSON.parse(xhr.responseText);
      const file = Array.isArray(answer.files) ? answer.files[0] : null;
      return answer.serverMessage || (file && file.serverMessage) || answer.message || null;
    } catch (_) {
      return null;
    }
  }

  const uppy = new Uppy({ id: "uppy", autoProceed: false })
    .use(Dashboard, {
      inline: true,
      target: "#uppy",
      width: "100%",
      height: 420,
      showProgressDetails: true,
      proudlyDisplayPoweredByUppy: false,
    })
    .use(XHRUpload, {
      endpoint: uploadPath,
      fieldName: "file",
      limit: 2,
      // Only the file: Uppy's own metadata (name, type) would go up as form fields.
      allowedMetaFields: [],
      // A refusal is the server's verdict (and a keyless retry would be a new upload).
      shouldRetry: () => false,
      // The layer explains a refusal in its JSON; make that the error Uppy shows.
      async onAfterResponse(xhr) {
        if (xhr.status >= 400) {
          throw new Error(refusal(xhr) || `HTTP ${xhr.status} ${xhr.statusText}`);
        }
      },
    });

  const list = document.getElementById("responses");
  function show(file, text, failed) {
    document.getElementById("no-responses").hidden = true;
    const item = document.createElement("li");
    item.dataset.name = file.name;
    if (failed) item.className = "failed";
    item.textContent = `${file.name}: ${text}`;
    list.append(item);
  }

  uppy.on("upload-success", (file, response) => {
    window.uppyEvents.push({ event: "upload-success", name: file.name, status: response.status, body: response.body });
    show(file, JSON.stringify(response.body), false);
  });
  uppy.on("upload-error", (file, error, response) => {
    window.uppyEvents.push({ event: "upload-error", name: file && file.name, message: error.message, status: response && response.status });
    if (file) show(file, error.message, true);
  });
  uppy.on("complete", (result) => {
    window.uppyEvents.push({
      event: "complete",
      successful: result.successful.map((f) => f.name),
      failed: result.failed.map((f) => f.name),
    });
  });
  window.uppy = uppy;
  window.uppyReady = true;
})();
