// vmshadow web UI: the API token, calls to the REST API, the forms and the list.
// No build step and no dependencies: plain ES2020 that Chromium and Firefox run as is.
"use strict";

const vmshadow = (() => {
  const KEY = "vmshadow.token";

  const token = () => sessionStorage.getItem(KEY);

  // Every change goes through the REST API with the bearer token; the answer is
  // {ok, status, data} where data always has an `error` string when !ok.
  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    let resp;
    try {
      resp = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      return { ok: false, status: 0, data: { error: "The service did not answer: is `vmshadow serve` running?" } };
    }
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : {};
    } catch (e) {
      data = null;
    }
    if (!resp.ok && (!data || typeof data.error !== "string")) {
      data = { error: `The service answered ${resp.status} ${resp.statusText || ""}`.trim() };
    }
    if (resp.status === 401) {
      data.error = t ? "The token is not accepted: sign in again." : "Sign in with the API token first.";
      data.signIn = true;
    }
    return { ok: resp.ok, status: resp.status, data: data || {} };
  }

  // A message in an alert box, with a sign-in link when the API said 401.
  function showMessage(box, data) {
    box.textContent = data.error;
    if (data.signIn) {
      const a = document.createElement("a");
      a.href = "/login?next=" + encodeURIComponent(location.pathname);
      a.textContent = "Sign in";
      box.append(" ", a);
    }
    box.hidden = false;
  }

  function hideMessage(box) {
    box.hidden = true;
    box.textContent = "";
  }

  // The API names the field of a bad input: "requested.vcpus", "vcpus", "name".
  const ALIASES = { name: "vm_name" };
  function fieldKey(field) {
    if (!field) return null;
    const last = String(field).split(".").pop();
    return ALIASES[last] || last;
  }

  function clearErrors(form) {
    form.querySelectorAll(".field-error").forEach((p) => (p.textContent = ""));
    form.querySelectorAll("[aria-invalid]").forEach((i) => i.removeAttribute("aria-invalid"));
  }

  // Show each error under its field; what names no field of the form goes to `box`.
  // Returns the first invalid control, focused.
  function showErrors(form, data, box, prefix = "") {
    clearErrors(form);
    if (data.signIn) {
      showMessage(box, data);
      box.focus?.();
      return null;
    }
    const list = Array.isArray(data.errors) && data.errors.length
      ? data.errors
      : [{ field: data.field, reason: data.reason || data.error }];
    let first = null;
    const unplaced = [];
    for (const e of list) {
      // Some answers name the field only in the message ("vm_name: ... not a VM ...").
      const named = !e.field && /^([a-z_]+): /.exec(e.reason || "");
      const key = fieldKey(e.field || (named && named[1]));
      const p = key && form.querySelector("#" + CSS.escape(prefix + "err-" + key));
      if (!p) {
        unplaced.push(e.field ? `${e.field}: ${e.reason}` : e.reason);
        continue;
      }
      p.textContent = p.textContent ? p.textContent + "; " + e.reason : e.reason;
      const control = form.querySelector("#" + CSS.escape(prefix + key)) ||
        p.closest(".field, fieldset")?.querySelector("input, select");
      if (control) {
        control.setAttribute("aria-invalid", "true");
        first = first || control;
      }
    }
    if (unplaced.length) {
      showMessage(box, { ...data, error: unplaced.join("; ") });
    } else if (first) {
      box.textContent = "Please correct the marked field" + (list.length > 1 ? "s." : ".");
      box.hidden = false;
    }
    (first || box).focus?.();
    return first;
  }

  // A number input's value, or null when empty; `bad` when the browser could not parse it.
  function numberOf(input) {
    if (input.validity && input.validity.badInput) return { bad: true };
    return { value: input.value.trim() === "" ? null : Number(input.value) };
  }

  function authStatus() {
    const signIn = document.getElementById("sign-in");
    const signOut = document.getElementById("sign-out");
    if (!signIn || !signOut) return;
    const signed = !!token();
    signIn.hidden = signed;
    signOut.hidden = !signed;
    signIn.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    signOut.onclick = async () => {
      sessionStorage.removeItem(KEY);
      try {
        await fetch("/ui/sign-out");  // drops the read cookie, which the script cannot see
      } catch (e) {
        // Nothing to undo: the tab has already forgotten the token.
      }
      authStatus();
    };
  }

  // The server checked `next` (a path on this host, else "/") and put it on the form;
  // the address bar's copy is never used. The test here is a second line only.
  function safeNext(form) {
    const next = form.dataset.next || "/";
    const sameOrigin = next.startsWith("/") && !next.startsWith("//") && !/[\\\s]/.test(next);
    return sameOrigin ? next : "/";
  }

  function initLogin() {
    const form = document.getElementById("login-form");
    if (!form) return;
    const input = form.querySelector("#token");
    const err = form.querySelector("#token-error");
    async function submit() {
      err.textContent = "";
      input.removeAttribute("aria-invalid");
      const t = input.value.trim();
      if (!t) {
        err.textContent = "Paste the API token.";
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
      let resp;
      try {
        resp = await fetch("/ui/auth-check", { headers: { Authorization: "Bearer " + t } });
      } catch (e) {
        err.textContent = "The service did not answer.";
        return;
      }
      if (resp.status === 204) {
        sessionStorage.setItem(KEY, t);
        location.assign(safeNext(form));
        return;
      }
      err.textContent = resp.status === 401
        ? "This is not the service's token (see the api-token file)."
        : `The service answered ${resp.status}.`;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      submit();
    });
    // `vmshadow serve` prints /login#token=...: a fragment never reaches the server
    // or its logs; take it, then drop it from the address bar and the history.
    const m = location.hash.match(/token=([^&]+)/);
    if (m) {
      input.value = decodeURIComponent(m[1]);
      history.replaceState(null, "", location.pathname + location.search);
      submit();
    } else {
      input.focus();
    }
  }

  // The server writes instants in UTC (<time datetime>); the reader thinks in the
  // browser's zone. Each <time class="local"> is rewritten in it: data-show="time"
  // for a timeline's clock time, otherwise date and time with the zone's name.
  const FORMATS = {
    time: { hour: "2-digit", minute: "2-digit", second: "2-digit" },
    datetime: {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
      timeZoneName: "short",
    },
  };
  function localTimes(root = document) {
    root.querySelectorAll("time.local[datetime]").forEach((el) => {
      // Python writes microseconds; Date wants at most milliseconds.
      const d = new Date(el.getAttribute("datetime").replace(/(\.\d{3})\d+/, "$1"));
      if (isNaN(d.getTime())) return;
      el.textContent = d.toLocaleString(undefined, FORMATS[el.dataset.show] || FORMATS.datetime);
      el.title = d.toISOString();
    });
  }

  // The list re-renders on the server every few seconds; focus stays on its link.
  function initList() {
    const rows = document.getElementById("rows");
    if (!rows) return;
    let last = rows.innerHTML;
    async function refresh() {
      if (document.hidden) return;
      let html;
      try {
        const resp = await fetch(rows.dataset.refresh, { headers: { Accept: "text/html" } });
        if (!resp.ok) return;
        html = await resp.text();
      } catch (e) {
        return;
      }
      if (html === last) return;
      last = html;
      const focused = rows.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
      rows.innerHTML = html;
      localTimes(rows);
      if (focused) rows.querySelector(`a[href="${CSS.escape(focused)}"]`)?.focus();
    }
    setInterval(refresh, 4000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    authStatus();
    localTimes();
    initLogin();
    initList();
  });

  return { api, showMessage, hideMessage, showErrors, clearErrors, numberOf, token, localTimes };
})();
