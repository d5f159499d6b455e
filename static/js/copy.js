// Copy buttons: <button data-copy="#id"> puts the text of the element it names on the clipboard and says so. One
// listener on the document, so buttons that htmx swaps in (a new token's panel) work too.
(function () {
  "use strict";
  document.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest("button[data-copy]") : null;
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(
      () => {
        button.textContent = "Copied";
        button.setAttribute("aria-live", "polite");
      },
      () => {
        button.textContent = "Select and copy it";
      },
    );
  });
})();
