// Data set import: upload with a progress bar (XMLHttpRequest), or ask a worker for CIFAR-10.
"use strict";

(() => {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const NAME = /^[A-Za-z0-9._-]{1,100}$/;
  const $ = (id) => document.getElementById(id);
  const { fmt } = dom;
  const bar = $("upload-progress"), barFill = bar.querySelector("span"), barText = $("upload-progress-text");

  const explain = (status, data) => {
    const detail = data && data.detail;
    if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    return detail ? String(detail) : `upload failed (HTTP ${status})`;
  };

  function upload(file, name, resize) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      // name and resize go in the URL so a bad name is refused before the file is sent
      xhr.open("POST", `/api/datasets/upload?name=${encodeURIComponent(name)}&resize=${resize}`);
      xhr.setRequestHeader("X-CSRF-Token", api.csrf());
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (e) => {
        if (!e.lengthComputable) return;
        const pct = (100 * e.loaded) / e.total;
        barFill.style.width = `${fmt.fixed(pct, 1)}%`;
        barText.textContent = `${fmt.fixed(e.loaded / 2 ** 20, 1)} of ${fmt.mib(e.total)} sent`;
      });
      xhr.addEventListener("load", () => {
        if (xhr.status === 202) resolve(xhr.response);
        else reject(new Error(explain(xhr.status, xhr.response)));
      });
      xhr.addEventListener("error", () => reject(new Error("the upload was interrupted")));
      const body = new FormData();
      body.append("file", file);
      xhr.send(body);
    });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("upload-file").files[0], name = $("upload-name").value.trim();
    $("upload-error").textContent = "";
    $("upload-name-error").textContent = NAME.test(name) ? "" : "use 1 to 100 letters, digits, - _ or .";
    if (!NAME.test(name)) return;
    if (!file) { $("upload-error").textContent = "choose a file first"; return; }
    $("upload-button").disabled = true;
    bar.hidden = false;
    barFill.style.width = "0%";
    try {
      const started = await upload(file, name, $("upload-resize").checked);
      barText.textContent = "uploaded: its import is listed below";
      datasetPages.track({ ...started, file: file.name });
      form.reset();
    } catch (err) {
      $("upload-error").textContent = err.message;
      bar.hidden = true;
      barText.textContent = "";
    } finally {
      $("upload-button").disabled = false;
    }
  });

  $("cifar10").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    $("upload-error").textContent = "";
    try {
      const started = await api.post("/api/datasets/cifar10", { name: "cifar10" });
      datasetPages.track({ ...started, file: "CIFAR-10 (download)" });
    } catch (err) {
      $("upload-error").textContent = explain(err.status, err.data);
    } finally {
      button.disabled = false;
    }
  });
})();
