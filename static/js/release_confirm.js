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
    send(form);
  }

  // In place when htmx is there: a release answers 204 and the page's release cards refresh themselves (the live
  // charts go on); a refusal comes back into #release-refusal. Without htmx, the form posts and the page reloads.
  function send(form) {
    if (!window.htmx) {
      form.submit(); // no submit event: this handler does not run again
      return;
    }
    window.htmx.ajax("POST", form.getAttribute("action") || window.location.pathname, {
      values: Object.fromEntries(new FormData(form)),
      target: "#release-refusal",
      swap: "innerHTML",
    });
  }

  document.body.addEventListener("release-changed", () => {
    const refusal = document.getElementById("release-refusal");
    if (refusal) refusal.replaceChildren();
  });

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
      event.preventDefault();
      if (window.confirm(form.dataset.confirm)) send(form);
    }
  });
})();
