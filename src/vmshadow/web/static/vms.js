// The VMs page: delete a VM through the REST API with the tab's bearer token,
// as the transition page's cancel does (the page itself has no authority).
"use strict";

(() => {
  const table = document.getElementById("vms");
  if (!table) return;
  const { api, showMessage, hideMessage } = vmshadow;
  const box = document.getElementById("vms-error");

  table.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-delete]");
    if (!button || !table.contains(button)) return;
    const name = button.dataset.delete;
    // Deleting destroys the VM and its disks: asked once, in words that say so.
    if (!window.confirm(`${button.dataset.confirm} The VM is destroyed and its disks are deleted.`)) {
      return;
    }
    hideMessage(box);
    button.disabled = true;
    const r = await api("DELETE", "/api/v1/vms/" + encodeURIComponent(name));
    button.disabled = false;
    if (!r.ok) {
      showMessage(box, r.data);
      box.focus();
      return;
    }
    // The server renders the list again: what is left, and any host that went away.
    location.reload();
  });
})();
