// Drag-and-drop upload to the REST API with a real progress bar (XHR upload progress events).
(function () {
  "use strict";
  const zone = document.getElementById("dropzone");
  if (!zone) return;
  const fileInput = document.getElementById("upload-file");
  const sampleInput = document.getElementById("upload-sample");
  const description = document.getElementById("upload-description");
  const bar = document.getElementById("upload-progress");
  const percent = document.getElementById("upload-percent");
  const errorBox = document.getElementById("upload-error");
  const csrf = (document.cookie.match(/(?:^|; )csrftoken=([^;]+)/) || [])[1] || "";

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    zone.classList.remove("busy");
  }

  function send(file) {
    errorBox.hidden = true;
    const form = new FormData();
    form.append("file", file, file.name);
    if (sampleInput.files.length) form.append("sample", sampleInput.files[0], sampleInput.files[0].name);
    form.append("description", description.value);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", zone.dataset.url);
    xhr.setRequestHeader("X-CSRFToken", decodeURIComponent(csrf));
    xhr.setRequestHeader("Accept", "application/json");
    bar.hidden = false;
    bar.value = 0;
    zone.classList.add("busy");
    xhr.upload.addEventListener("progress", function (event) {
      if (!event.lengthComputable) return;
      const done = Math.round((event.loaded / event.total) * 100);
      bar.value = done;
      percent.textContent = done + "%";
    });
    xhr.addEventListener("load", function () {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status === 201 && body) {
        window.location.href = zone.dataset.versionUrl + body.number + "/";
      } else if (body && body.error) {
        showError(body.error.message);
      } else {
        showError("Upload failed (HTTP " + xhr.status + ").");
      }
    });
    xhr.addEventListener("error", function () { showError("The connection broke during the upload; nothing was stored."); });
    xhr.send(form);
  }

  fileInput.addEventListener("change", function () { if (fileInput.files.length) send(fileInput.files[0]); });
  zone.addEventListener("dragover", function (event) { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) send(event.dataTransfer.files[0]);
  });
})();
