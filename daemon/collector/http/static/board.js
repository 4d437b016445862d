// The board of one site: polls /api/v1/devices?site=S every 5 s and updates only the tiles
// that changed, so a control someone is about to press is not replaced under their finger.
"use strict";

(() => {
  const { h, api } = Fleet;
  const POLL_MS = 5000;
  const NO_DATA_AFTER_S = 15 * 60; // every device silent this long: the feed has stopped
  const site = document.body.dataset.site;
  const grid = document.getElementById("tiles");
  const summary = document.getElementById("summary");
  const shown = new Map(); // device -> {key, el}
  let fetchedAt = 0;
  let items = [];

  function keyOf(item) {
    // The age moves every poll; it is refreshed in place, not by rebuilding the tile.
    const { last_seen_age_s, ...rest } = item;
    return JSON.stringify(rest) + (Fleet.signedIn() ? "+" : "-");
  }

  function ageOf(item) {
    if (item.last_seen_age_s === null || item.last_seen_age_s === undefined) return null;
    return item.last_seen_age_s + (Date.now() - fetchedAt) / 1000;
  }

  function showError(tileEl, message) {
    const el = tileEl && tileEl.querySelector("[data-error]");
    if (el) el.textContent = message || "";
  }

  // Only what the sheet could accept: a device that is out of service, offline or never
  // heard cannot be taken, so it offers no "Sign out" (the API would refuse it anyway).
  const TAKEABLE = new Set(["ready", "charging", "low"]);

  function actionsFor(item) {
    if (!Fleet.signedIn()) return null;
    const buttons = [];
    const button = (action, text, onclick, primary) =>
      h("button", { type: "button", class: primary ? "primary" : null, "data-action": action, text, onclick });
    if (item.signed_out_to) {
      buttons.push(button("sign-in", "Sign in", (ev) => signIn(item, ev.currentTarget), true));
    } else if (TAKEABLE.has(item.state)) {
      buttons.push(button("sign-out", "Sign out", () => openSignOut(item), true));
    }
    if (item.out_of_service) {
      buttons.push(button("return", "Return to service", (ev) => backInService(item, ev.currentTarget)));
    } else if (!item.signed_out_to) {
      buttons.push(button("oos", "Out of service", () => openOos(item)));
    }
    return h("div", { class: "actions" }, buttons);
  }

  async function change(button, method, path, body) {
    const tileEl = button.closest(".tile");
    button.disabled = true;
    const res = await api(method, path, body);
    button.disabled = false;
    if (res.status === 401) {
      location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
      return res;
    }
    showError(tileEl, res.ok ? "" : res.error);
    if (res.ok) refresh();
    return res;
  }

  const dev = (item) => encodeURIComponent(item.device);
  const signIn = (item, b) => change(b, "POST", `/api/v1/assignments/${dev(item)}/return`, {});
  const backInService = (item, b) => change(b, "DELETE", `/api/v1/devices/${dev(item)}/out-of-service`);
  const ack = (item, alert, b) =>
    change(b, "POST", `/api/v1/alerts/${dev(item)}/${encodeURIComponent(alert.rule)}/ack`, {});

  function dialog(id, item, onSubmit) {
    const dlg = document.getElementById(id);
    const form = document.getElementById(`${id}-form`);
    const error = document.getElementById(`${id}-error`);
    document.getElementById(`${id}-device`).textContent = item.name || item.device;
    error.textContent = "";
    form.reset();
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      const submit = form.querySelector("button[type=submit]");
      submit.disabled = true;
      const res = await onSubmit(new FormData(form));
      submit.disabled = false;
      if (res.status === 401) {
        location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
      } else if (res.ok) {
        dlg.close();
        refresh();
      } else {
        const fields = res.data && res.data.fields ? Object.values(res.data.fields) : [];
        error.textContent = fields.length ? fields.join("; ") : res.error;
      }
    };
    document.getElementById(`${id}-cancel`).onclick = () => dlg.close();
    dlg.showModal();
  }

  function openSignOut(item) {
    dialog("signout", item, (data) => {
      const body = { device: item.device, officer: String(data.get("officer") || "").trim() };
      const due = String(data.get("due") || "");
      if (due) body.due_back = Fleet.nextClockIso(due);
      const note = String(data.get("note") || "").trim();
      if (note) body.note = note;
      return api("POST", "/api/v1/assignments", body);
    });
  }

  function openOos(item) {
    dialog("oos", item, (data) =>
      api("POST", `/api/v1/devices/${dev(item)}/out-of-service`, {
        reason: String(data.get("reason") || "").trim(),
      }),
    );
  }

  function render() {
    const seen = new Set();
    const order = [];
    for (const item of items) {
      seen.add(item.device);
      const key = keyOf(item);
      let entry = shown.get(item.device);
      if (!entry || entry.key !== key) {
        const el = Fleet.tile(item, ageOf(item), {
          link: !Fleet.kiosk(),
          actions: actionsFor(item),
          onAck: Fleet.signedIn() ? ack : null,
        });
        const focused = entry && entry.el.contains(document.activeElement)
          ? document.activeElement.getAttribute("data-action")
          : null;
        const oldError = entry ? entry.el.querySelector("[data-error]").textContent : "";
        if (entry) entry.el.replaceWith(el);
        entry = { key, el };
        shown.set(item.device, entry);
        showError(el, oldError);
        if (focused) {
          const again = el.querySelector(`[data-action="${focused}"]`);
          if (again) again.focus();
        }
      } else {
        entry.el.querySelector(".seen-text").textContent = `Last seen ${Fleet.ago(ageOf(item))}`;
      }
      order.push(entry.el);
    }
    for (const [device, entry] of shown) {
      if (!seen.has(device)) {
        entry.el.remove();
        shown.delete(device);
      }
    }
    const empty = grid.querySelector(".empty");
    if (empty) empty.remove();
    // Move nodes only when the order changed: moving a node takes its focus away.
    const current = Array.from(grid.children);
    if (current.length !== order.length || current.some((el, i) => el !== order[i])) grid.append(...order);
    if (items.length === 0) grid.replaceChildren(h("p", { class: "empty", text: "No devices heard at this site yet." }));
    grid.setAttribute("aria-busy", "false");
  }

  function summarise() {
    const counts = new Map();
    for (const item of items) counts.set(item.label, (counts.get(item.label) || 0) + 1);
    const text = Array.from(counts, ([label, n]) => `${n} ${label.toLowerCase()}`).join(", ");
    if (summary.textContent !== text) summary.textContent = text; // announced only on change
  }

  async function load() {
    const res = await api("GET", `/api/v1/devices?site=${encodeURIComponent(site)}`, undefined, 4000);
    if (!res.ok) return res;
    fetchedAt = Date.now();
    items = Array.isArray(res.data) ? res.data : [];
    render();
    summarise();
    const ages = items.map((i) => i.last_seen_age_s).filter((a) => a !== null && a !== undefined);
    return { ok: true, newestAgeS: ages.length ? Math.min(...ages) : null };
  }

  let refresh = () => {};
  Fleet.accountBar().then(() => {
    refresh = Fleet.poll(load, POLL_MS, NO_DATA_AFTER_S);
  });
})();
