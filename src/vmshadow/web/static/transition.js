// A transition's page: live parts, live charts (uPlot), decisions and override review.
"use strict";

(() => {
  const root = document.getElementById("transition");
  if (!root) return;
  const id = root.dataset.id;
  const API = "/api/v1/transitions/" + encodeURIComponent(id);
  const { api, showMessage, hideMessage, showErrors, clearErrors, numberOf, localTimes } = vmshadow;

  // -- live parts (server-rendered) -----------------------------------------------------
  let decideKey = root.dataset.decideKey;
  let state = root.dataset.state;
  let refs = { need: null, final: null };
  const partHtml = {};
  let refreshTimer = null;

  // One refresh pending at a time; a sooner one (an event) replaces a later one
  // (a sample's), so the state never waits on the samples' pace.
  let refreshDue = 0;
  function scheduleRefresh(delay = 300) {
    const due = Date.now() + delay;
    if (refreshTimer && refreshDue <= due) return;
    clearTimeout(refreshTimer);
    refreshDue = due;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      refreshParts();
    }, delay);
  }

  async function refreshParts() {
    let body;
    try {
      const resp = await fetch(`/ui/t/${encodeURIComponent(id)}/parts`, { headers: { Accept: "application/json" } });
      if (!resp.ok) return;
      body = await resp.json();
    } catch (e) {
      return;
    }
    refs = body.refs;
    for (const [name, html] of Object.entries(body.parts)) {
      const el = root.querySelector(`[data-part="${name}"]`);
      if (!el) continue;
      if (name === "decide" && body.decide_key === decideKey) continue; // keep what is typed
      if (partHtml[name] === html) continue;
      partHtml[name] = html;
      const focusedId = el.contains(document.activeElement) ? document.activeElement.id : null;
      const typed = name === "decide" ? typedOverride(el) : null;
      el.innerHTML = html;
      localTimes(el);
      if (typed) restoreOverride(el, typed);
      if (focusedId) {
        const again = document.getElementById(focusedId);
        (again || el.querySelector("h2") || root).focus?.();
      }
    }
    decideKey = body.decide_key;
    root.querySelector('[data-part="realized"]').hidden = !body.refs.final;
    if (body.state !== state) {
      state = body.state;
      root.dataset.state = state;
      document.getElementById("live-state").textContent = "State: " + state;
    }
    drawSoon();
  }

  // A refined prediction re-renders the decision panel: what the user typed into
  // the override survives it, and is reviewed against the new prediction.
  function typedOverride(el) {
    const form = el.querySelector("#override-form");
    if (!form) return null;
    const typed = {};
    for (const input of form.querySelectorAll("input")) {
      const changed = input.type === "checkbox" ? input.checked : input.value !== input.defaultValue;
      if (changed) typed[input.id] = input.type === "checkbox" ? input.checked : input.value;
    }
    return Object.keys(typed).length ? typed : null;
  }

  function restoreOverride(el, typed) {
    const form = el.querySelector("#override-form");
    if (!form) return;
    for (const [inputId, value] of Object.entries(typed)) {
      const input = form.querySelector("#" + CSS.escape(inputId));
      if (!input) continue;
      if (input.type === "checkbox") input.checked = value;
      else input.value = value;
    }
    review(form);
  }

  // -- decisions ----------------------------------------------------------------------------
  const decideBox = () => root.querySelector("#decide-error");

  root.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (!button || !root.contains(button)) return;
    const action = button.dataset.action;
    if (action === "cancel" && !window.confirm(
      state === "running"
        ? "Stop observing? The VM keeps running."
        : "Cancel this transition? The shadow and the pending VM are removed.")) {
      return;
    }
    // Fast launch gives away the one moment to look at the size before the VM
    // starts: asked once, like a cancel.
    if (action === "fast-launch" && !window.confirm(
      "Fast launch: the VM launches with the predicted size as soon as the shadow has " +
      "measured it, without asking you to confirm the size. Turn it on?")) {
      return;
    }
    hideMessage(decideBox());
    button.disabled = true;
    const r = await api("POST", `${API}/${action}`);
    button.disabled = false;
    if (!r.ok) showMessage(decideBox(), r.data);
    refreshParts();
  });

  function overrideBody(form, local) {
    const body = {};
    for (const key of ["vcpus", "memory_mib", "iops"]) {
      const n = numberOf(form.querySelector("#ov-" + key));
      if (n.bad) local.push({ field: key, reason: "not a number" });
      else if (n.value === null && key !== "iops") local.push({ field: key, reason: "needed" });
      else if (n.value !== null) body[key] = n.value;
    }
    return body;
  }

  function renderWarnings(form, warnings, needsAck, resizeMode) {
    const box = form.querySelector("#override-warnings");
    box.textContent = "";
    const ack = form.querySelector("#ack-field");
    if (!warnings.length) {
      const p = document.createElement("p");
      p.className = "ok-note";
      p.textContent = "No warning: this size covers the prediction with its margin.";
      box.append(p);
    } else {
      const p = document.createElement("p");
      p.textContent = needsAck
        ? "Below the predicted need. The risk, resource by resource:"
        : "Within the prediction, but with less than the safety margin:";
      const ul = document.createElement("ul");
      for (const w of warnings) {
        const li = document.createElement("li");
        li.className = w.severity === "under-provisioned" ? "sev-risk" : "sev-change";
        li.dataset.resource = w.resource;
        li.textContent = w.message;
        ul.append(li);
      }
      box.append(p, ul);
    }
    if (resizeMode) {
      const p = document.createElement("p");
      p.textContent = resizeMode === "live" ? "This size applies live." : "This size needs a restart of the VM.";
      box.append(p);
    }
    ack.hidden = !needsAck;
    if (!needsAck) form.querySelector("#acknowledge_risk").checked = false;
  }

  let reviewTimer = null;
  let reviewSeq = 0;
  async function review(form) {
    const local = [];
    const body = overrideBody(form, local);
    const box = decideBox();
    hideMessage(box);
    if (local.length) {
      showErrors(form, { errors: local, error: "" }, box, "ov-");
      return;
    }
    const seq = ++reviewSeq;
    const r = await api("POST", form.dataset.review, body);
    if (seq !== reviewSeq) return; // a newer review is on its way
    if (r.ok) {
      clearErrors(form);
      renderWarnings(form, r.data.warnings, r.data.needs_acknowledgement, r.data.resize_mode);
    } else if (r.status === 409) {
      refreshParts(); // the state moved on
    } else {
      showErrors(form, r.data, box, "ov-");
      form.querySelector("#override-warnings").textContent = "";
    }
  }

  root.addEventListener("input", (ev) => {
    const form = ev.target.closest("#override-form");
    if (!form || ev.target.type === "checkbox") return;
    clearTimeout(reviewTimer);
    reviewTimer = setTimeout(() => review(form), 250);
  });

  root.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("#override-form");
    if (!form) return;
    ev.preventDefault();
    const box = decideBox();
    hideMessage(box);
    const local = [];
    const body = overrideBody(form, local);
    if (local.length) {
      showErrors(form, { errors: local, error: "" }, box, "ov-");
      return;
    }
    body.acknowledge_risk = form.querySelector("#acknowledge_risk").checked;
    const button = form.querySelector("#override-submit");
    button.disabled = true;
    const r = await api("POST", form.dataset.submit, body);
    button.disabled = false;
    if (r.ok) {
      refreshParts();
      return;
    }
    if (r.data.field === "acknowledge_risk") {
      const warnings = (r.data.warnings || []).map((m) => ({ message: m, severity: "under-provisioned" }));
      renderWarnings(form, warnings, true, null);
      const err = form.querySelector("#ov-err-acknowledge_risk");
      err.textContent = "Tick this box to launch below the predicted need.";
      const cb = form.querySelector("#acknowledge_risk");
      cb.setAttribute("aria-invalid", "true");
      cb.focus();
      return;
    }
    if (r.status === 409) refreshParts();
    showErrors(form, r.data, box, "ov-");
  });

  // -- charts -------------------------------------------------------------------------------
  const METRICS = ["busy_vcpus", "mem_used_mib", "iops"];
  const REF_KEY = { busy_vcpus: "vcpus", mem_used_mib: "memory_mib", iops: "iops" };
  const COLORS = { host: "#2563eb", guest: "#d97706", need: "#7c3aed", final: "#059669" };
  // samples[target][source] = [{x, busy_vcpus, mem_used_mib, iops}]
  const samples = { shadow: { host: [], guest: [] }, vm: { host: [], guest: [] } };
  const runOffset = { shadow: {}, vm: {} };
  const lastX = { shadow: 0, vm: 0 };
  const charts = {};
  const marks = phaseMarks.create(); // the shadow's phase and step starts
  const marksText = document.getElementById("phase-marks");
  let count = 0;
  let drawPending = false;
  const status = document.getElementById("charts-status");

  function resetSamples() {
    for (const target of Object.keys(samples)) {
      samples[target] = { host: [], guest: [] };
      runOffset[target] = {};
      lastX[target] = 0;
    }
    marks.reset();
    count = 0;
  }

  function addSample(s) {
    const target = s.target === "vm" ? "vm" : "shadow";
    const offsets = runOffset[target];
    // A profiling round that restarts its clock is laid after the previous one;
    // one whose clock runs on (the same shadow) keeps its own times.
    if (!(s.run in offsets)) {
      offsets[s.run] = Object.keys(offsets).length && s.t <= lastX[target] ? lastX[target] + 1 - s.t : 0;
    }
    const x = s.t + offsets[s.run];
    lastX[target] = Math.max(lastX[target], x);
    if (target === "shadow") marks.take(s.run, s.phase_id, x);
    const source = s.source === "guest" ? "guest" : "host";
    samples[target][source].push({ x, busy_vcpus: s.busy_vcpus, mem_used_mib: s.mem_used_mib, iops: s.iops });
    count += 1;
  }

  function table(points, metric) {
    const sorted = points.slice().sort((a, b) => a.x - b.x);
    const xs = [];
    const ys = [];
    for (const p of sorted) {
      if (xs.length && xs[xs.length - 1] === p.x) continue;
      xs.push(p.x);
      ys.push(p[metric] === undefined ? null : p[metric]);
    }
    return [xs, ys];
  }

  function chartData(target, metric) {
    const parts = [table(samples[target].host, metric)];
    const series = [{ label: "host view", stroke: COLORS.host }];
    if (samples[target].guest.length) {
      parts.push(table(samples[target].guest, metric));
      series.push({ label: "guest view", stroke: COLORS.guest });
    }
    let data = parts.length > 1 ? uPlot.join(parts) : parts[0];
    if (target === "vm") {
      // Reference lines: what was predicted and what the VM was given.
      for (const [name, label] of [["need", "predicted need"], ["final", "allocated"]]) {
        const v = refs[name] ? refs[name][REF_KEY[metric]] : null;
        if (v === null || v === undefined) continue;
        data = [...data, data[0].map(() => v)];
        series.push({ label, stroke: COLORS[name], dash: [6, 4] });
      }
    }
    return { data, series };
  }

  function ensureChart(el, target, metric, series) {
    const key = target + "/" + metric;
    const want = series.map((s) => s.label).join("|");
    const have = charts[key];
    if (have && have.labels === want) return have.plot;
    if (have) have.plot.destroy();
    const opts = {
      width: Math.max(240, el.clientWidth),
      height: 170,
      scales: { x: { time: false } },
      axes: [{ label: "seconds" }, { size: 56 }],
      series: [{ label: "s" }, ...series.map((s) => ({ ...s, width: 2, spanGaps: true }))],
      legend: { live: false },
      plugins: target === "shadow" ? [marks.plugin()] : [],
    };
    const plot = new uPlot(opts, [[], ...series.map(() => [])], el);
    charts[key] = { plot, labels: want, el };
    return plot;
  }

  function draw() {
    drawPending = false;
    for (const target of ["shadow", "vm"]) {
      const any = samples[target].host.length + samples[target].guest.length;
      const box = document.getElementById("charts-" + target);
      box.hidden = !any;
      if (!any) continue;
      for (const el of box.querySelectorAll(".chart")) {
        const metric = el.dataset.metric;
        const { data, series } = chartData(target, metric);
        ensureChart(el, target, metric, series).setData(data);
      }
    }
    marksText.textContent = marks.length ? "Phase starts: " + marks.text() + "." : "";
    status.textContent = count
      ? `${count} samples${streamEnded ? "; the stream has ended." : ", live."}`
      : streamEnded ? "No measurements were taken." : "Waiting for the first measurements…";
  }

  function drawSoon() {
    if (drawPending || typeof uPlot === "undefined") return;
    drawPending = true;
    setTimeout(() => requestAnimationFrame(draw), 400);
  }

  window.addEventListener("resize", () => {
    for (const c of Object.values(charts)) c.plot.setSize({ width: Math.max(240, c.el.clientWidth), height: 170 });
  });

  // -- the stream ---------------------------------------------------------------------------
  let source = null;
  let streamEnded = false;

  function connect() {
    resetSamples(); // the server replays the whole run on each connection
    source = new EventSource(`${API}/stream`);
    source.addEventListener("open", () => {
      status.textContent = "Connected; waiting for measurements…";
    });
    source.addEventListener("event", () => scheduleRefresh());
    source.addEventListener("sample", (ev) => {
      const s = JSON.parse(ev.data);
      addSample(s);
      drawSoon();
      // The realized table follows the VM's samples, and the time left the
      // shadow's while it profiles: one refresh a few seconds after a sample,
      // which takes in every sample stored by then (pending timers coalesce).
      if (s.target === "vm" || state === "profiling") scheduleRefresh(3000);
    });
    source.addEventListener("end", () => {
      streamEnded = true;
      source.close();
      refreshParts();
      drawSoon();
    });
    source.addEventListener("error", () => {
      source.close();
      if (streamEnded) return;
      status.textContent = "The stream was interrupted; reconnecting…";
      setTimeout(connect, 2000);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    connect();
    // A safety net for anything the stream did not announce (e.g. a lost connection).
    setInterval(() => {
      if (!document.hidden && !streamEnded) scheduleRefresh(0);
    }, 10000);
  });
})();
