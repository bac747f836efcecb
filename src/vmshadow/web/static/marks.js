// Where each phase and ramp step of the shadow's run starts, for its charts:
// a line per phase start (solid and labelled for a ramp step), and the same
// starts in words for the charts' text alternative.
"use strict";

const phaseMarks = (() => {
  // A ramp profile's phase ids are "s<step>-<kind>" (workloads/profiles.py).
  const STEP = /^s(\d+)-(.*)$/;

  function create() {
    const marks = [];
    const seen = new Set();

    // The first sample of a phase marks its start; a sample straddling two
    // phases has no phase id and marks nothing.
    function take(run, phaseId, x) {
      if (!phaseId) return;
      const key = run + "/" + phaseId;
      if (seen.has(key)) return;
      seen.add(key);
      const m = STEP.exec(phaseId);
      const step = m ? Number(m[1]) : null;
      const prev = marks[marks.length - 1];
      const startsStep = step !== null && (!prev || prev.run !== run || prev.step !== step);
      const kind = m ? m[2] : phaseId;
      marks.push({ x, run, step, startsStep, kind, label: startsStep ? `step ${step + 1}` : kind });
      marks.sort((a, b) => a.x - b.x);
    }

    function reset() {
      marks.length = 0;
      seen.clear();
    }

    // A ramp has a dozen phases: only its steps are labelled on the chart, or
    // the labels run into each other; a run without steps labels each phase.
    function draw(u) {
      if (!marks.length) return;
      const ramp = marks.some((m) => m.startsStep);
      const px = window.devicePixelRatio || 1;
      const { left, top, width, height } = u.bbox;
      const ctx = u.ctx;
      ctx.save();
      ctx.font = `${10 * px}px sans-serif`;
      ctx.textBaseline = "top";
      for (const m of marks) {
        const x = Math.round(u.valToPos(m.x, "x", true));
        if (x < left || x > left + width) continue;
        const strong = m.startsStep || !ramp;
        ctx.strokeStyle = strong ? "#475569" : "#cbd5e1";
        ctx.lineWidth = (m.startsStep ? 2 : 1) * px;
        ctx.setLineDash(m.startsStep ? [] : [4 * px, 3 * px]);
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
        if (strong) {
          ctx.fillStyle = "#334155";
          ctx.fillText(m.label, x + 3 * px, top + 2 * px);
        }
      }
      ctx.restore();
    }

    function text() {
      return marks
        .map((m) => (m.startsStep ? `step ${m.step + 1} (${m.kind})` : m.kind) + ` at ${Math.round(m.x)} s`)
        .join(", ");
    }

    return { take, reset, text, plugin: () => ({ hooks: { draw: [draw] } }), get length() { return marks.length; } };
  }

  return { create };
})();
