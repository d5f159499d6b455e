// The endpoint page's confirm step for promote and canary: a plain confirm() when the version keeps the primary's
// signature; otherwise a dialog that shows how its inputs and outputs differ (a table the server rendered and
// escaped) and releases only once "Allow the signature change" is ticked. Without this script the server refuses
// such a version and shows the same table with the same checkbox. Listens on the document: the change card is
// swapped for a fresh one whenever a release changes (static/js/live.js).
(() => {
  const dialogOf = () => document.getElementById("signature-confirm");

  function differencesOf(form) {
    const select = form.querySelector("select[name=version]");
    const id = select ? select.selectedOptions[0] && select.selectedOptions[0].dataset.signature : form.dataset.signature;
    return id ? document.getElementById(id) : null;
  }

  function question(form) {
    if (form.dataset.operation === "canary") {
      return "Send " + form.elements.canary_percent.value + "% of " + form.dataset.endpoint + " traffic to v" +
        form.elements.version.value + " (primary stays v" + form.dataset.primary + ")?";
    }
    return form.dataset.confirm;
  }

  function submitWith(form, allow) {
    let field = form.elements.allow_signature_change;
    if (!field) {
      field = document.createElement("input");
      field.type = "hidden";
      field.name = "allow_signature_change";
      form.appendChild(field);
    }
    field.value = allow ? "on" : "";
    form.submit(); // no submit event: this handler does not run again
  }

  function askAboutSignature(form, differences) {
    const dialog = dialogOf();
    const allow = dialog.querySelector("[data-allow]");
    const confirmButton = dialog.querySelector("[data-accept]");
    dialog.querySelector("[data-question]").textContent = question(form);
    dialog.querySelector("[data-differences]").replaceChildren(differences.content.cloneNode(true));
    allow.checked = false;
    confirmButton.disabled = true;
    allow.onchange = () => { confirmButton.disabled = !allow.checked; };
    confirmButton.onclick = () => {
      dialog.close();
      submitWith(form, true);
    };
    dialog.querySelector("[data-cancel]").onclick = () => dialog.close();
    dialog.showModal();
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.matches("form[data-release-form]")) {
      event.preventDefault();
      const differences = dialogOf() && differencesOf(form);
      if (differences) askAboutSignature(form, differences);
      else if (window.confirm(question(form))) submitWith(form, false);
    } else if (form.matches("form[data-confirm]")) {
      // Forms that only ask yes or no (rollback): here, not in an onsubmit attribute, which the
      // Content-Security-Policy would block.
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    }
  });
})();
