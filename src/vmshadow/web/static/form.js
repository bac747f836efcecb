// The new launch or resize form: every error at once, each under its field.
// The page's own checks mark what it can tell without the service (numbers and
// their bounds, the name's shape, a load the profile needs) all together; what
// only the service can tell comes back from the API, also all at once.
"use strict";

(() => {
  const form = document.getElementById("new-form");
  if (!form) return;
  const { api, hideMessage, showErrors, clearErrors, numberOf } = vmshadow;
  const box = form.querySelector("#form-error");
  const profile = form.querySelector("#profile");
  const unit = form.querySelector("#load-unit");
  const load = form.querySelector("#load");
  const limits = {
    vcpus: { max: Number(form.dataset.maxVcpus), by: form.dataset.maxVcpusBy },
    memory_mib: { max: Number(form.dataset.maxMemory), by: form.dataset.maxMemoryBy },
  };
  const namePattern = new RegExp("^(?:" + form.dataset.namePattern + ")$");

  const showUnit = () => {
    const u = profile.selectedOptions[0]?.dataset.unit;
    unit.textContent = u ? `(${u})` : "";
  };
  // A load typed for one profile means nothing in another's unit (200 requests/s
  // is not 200 transactions/s): a new profile starts from its own default.
  profile.addEventListener("change", () => {
    showUnit();
    load.value = profile.selectedOptions[0]?.dataset.load || "";
  });
  showUnit();

  // The same words the service uses, so an error reads the same from either side.
  function sizeProblem(key, value, min) {
    if (!Number.isInteger(value)) return "Input should be a valid integer";
    if (value < min) return `Input should be greater than or equal to ${min}`;
    const { max, by } = limits[key] || {};
    if (!max || value <= max) return null;
    if (key === "vcpus") {
      return by === "host" ? `${value} is more than the host's ${max} CPUs` : `${value} is above the quota of ${max}`;
    }
    return by === "host" ? `${value} MiB is more than the host's ${max} MiB` : `${value} MiB is above the quota of ${max} MiB`;
  }

  function collect() {
    const local = [];
    const num = (id) => {
      const n = numberOf(form.querySelector("#" + id));
      if (n.bad) local.push({ field: id, reason: "not a number" });
      return n.bad ? undefined : n.value;
    };
    const kind = form.querySelector("input[name=kind]:checked")?.value || "launch";
    const body = {
      kind,
      vm_name: form.querySelector("#vm_name").value.trim(),
      profile: profile.value,
      image: form.querySelector("#image").value.trim() || "builtin",
      fast_launch: form.querySelector("#fast_launch").checked,
    };
    if (!namePattern.test(body.vm_name)) {
      local.push({
        field: "vm_name",
        reason: `'${body.vm_name}' is not a valid VM name: 1-63 lowercase letters, digits and '-', starting with a letter`,
      });
    }
    const loadValue = num("load");
    const loadUnit = profile.selectedOptions[0]?.dataset.unit;
    if (loadValue === null && loadUnit) {
      local.push({ field: "load", reason: `profile ${body.profile} needs the expected load in ${loadUnit}` });
    } else if (typeof loadValue === "number" && !(loadValue > 0)) {
      local.push({ field: "load", reason: "Input should be greater than 0" });
    } else if (typeof loadValue === "number") {
      body.load = loadValue;
    }
    const vcpus = num("vcpus");
    const mem = num("memory_mib");
    const iops = num("iops");
    for (const [key, value, min] of [["vcpus", vcpus, 1], ["memory_mib", mem, 128], ["iops", iops, 1]]) {
      if (typeof value !== "number") continue;
      const problem = key === "iops" ? (value >= 1 ? null : "Input should be greater than or equal to 1") : sizeProblem(key, value, min);
      if (problem) local.push({ field: key, reason: problem });
    }
    if (vcpus !== null || mem !== null || iops !== null) {
      if (vcpus === null) local.push({ field: "vcpus", reason: "needed with a requested size" });
      if (mem === null) local.push({ field: "memory_mib", reason: "needed with a requested size" });
      body.requested = { vcpus, memory_mib: mem };
      if (iops !== null) body.requested.iops = iops;
    } else if (kind === "launch") {
      local.push({ field: "requested", reason: "a launch needs a requested size" });
    }
    const when = form.querySelector("#scheduled_at").value;
    if (when) {
      // datetime-local is the browser's local time; the API takes an instant.
      const d = new Date(when);
      if (isNaN(d.getTime())) local.push({ field: "scheduled_at", reason: "not a date and time" });
      else body.scheduled_at = d.toISOString();
    }
    return { body, local };
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    hideMessage(box);
    clearErrors(form);
    const { body, local } = collect();
    if (local.length) {
      showErrors(form, { errors: local, error: "" }, box);
      return;
    }
    if (body.fast_launch && !window.confirm(
      `Fast launch: ${body.vm_name} launches with the predicted size as soon as the shadow has ` +
      "measured it, without asking you to confirm the size. Start?")) {
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const r = await api("POST", form.dataset.api, body);
    button.disabled = false;
    if (r.ok) {
      location.assign("/t/" + encodeURIComponent(r.data.id));
      return;
    }
    showErrors(form, r.data, box);
  });
})();
