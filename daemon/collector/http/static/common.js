// Shared by the board's pages: DOM building, the JSON API with the session's CSRF token,
// times for people, one device tile, and polling with a visible "connection lost".
// Everything from the API reaches the page as text (textContent), never as markup.
"use strict";

const Fleet = (() => {
  const state = { user: null, csrf: null };

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  // One answer: {ok, status, data, error}. A network failure is status 0 with a sentence.
  async function api(method, path, body, timeoutMs) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs || 8000);
    try {
      const res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
        signal: abort.signal,
      });
      let data = null;
      try {
        data = await res.json();
      } catch (e) {
        data = null;
      }
      const error = res.ok ? null : (data && data.error) || `the server answered ${res.status}`;
      return { ok: res.ok, status: res.status, data, error };
    } catch (e) {
      return { ok: false, status: 0, data: null, error: "no answer from the collector" };
    } finally {
      clearTimeout(timer);
    }
  }

  async function loadSession() {
    const res = await api("GET", "/api/v1/session");
    state.user = res.ok && res.data && res.data.user ? res.data.user : null;
    state.csrf = res.ok && res.data ? res.data.csrf || null : null;
    return state.user;
  }

  const kiosk = () => document.body.dataset.kiosk === "1";
  const signedIn = () => !kiosk() && Boolean(state.user);

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // Clock times are the station's (data-tz, its alerts.timezone), as in the verdicts'
  // reasons and the alert messages, whatever zone the screen itself is set to.
  const TZ = document.body.dataset.tz || undefined;
  const PARTS = new Intl.DateTimeFormat("en-GB", {
    timeZone: TZ,
    hourCycle: "h23",
    weekday: "short",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });

  function parts(date) {
    const out = {};
    for (const p of PARTS.formatToParts(date)) out[p.type] = p.value;
    return out;
  }

  // Minutes the station's zone is ahead of UTC at `date`.
  function offsetMin(date) {
    const p = parts(date);
    const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
    return Math.round((asUtc - Math.floor(date.getTime() / 1000) * 1000) / 60000);
  }

  // A clock time; another day gets its weekday too.
  function clock(iso) {
    if (!iso) return "";
    const p = parts(new Date(iso));
    const today = parts(new Date());
    const hm = `${p.hour}:${p.minute}`;
    return p.year === today.year && p.month === today.month && p.day === today.day ? hm : `${p.weekday} ${hm}`;
  }

  function hms(d) {
    const p = parts(d);
    return `${p.hour}:${p.minute}:${p.second}`;
  }

  // The next time the station's clock shows HH:MM, as ISO-8601 with its offset.
  function nextClockIso(hhmm) {
    const [hrs, mins] = hhmm.split(":").map(Number);
    const now = new Date();
    const p = parts(now);
    for (let days = 0; days < 3; days++) {
      const wall = Date.UTC(+p.year, +p.month - 1, +p.day + days, hrs, mins, 0);
      let off = offsetMin(new Date(wall));
      off = offsetMin(new Date(wall - off * 60000)); // once more: the offset at that instant
      const at = new Date(wall - off * 60000);
      if (at.getTime() > now.getTime()) {
        const local = new Date(wall);
        const day = `${local.getUTCFullYear()}-${pad(local.getUTCMonth() + 1)}-${pad(local.getUTCDate())}`;
        const sign = off >= 0 ? "+" : "-";
        const a = Math.abs(off);
        return `${day}T${pad(hrs)}:${pad(mins)}:00${sign}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
      }
    }
    return null;
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "never";
    const s = Math.max(0, Math.round(seconds));
    if (s < 5) return "just now";
    if (s < 60) return `${s} s ago`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ago`;
    const hrs = Math.floor(m / 60);
    if (hrs < 48) return `${hrs} h ${m % 60} min ago`;
    return `${Math.floor(hrs / 24)} days ago`;
  }

  function num(value, digits) {
    return value === null || value === undefined ? null : Number(value).toFixed(digits);
  }

  // What is left: range for a vehicle, runtime for a handheld; marked when only a guess.
  function remaining(item) {
    const guess = item.estimate === "default" ? " (estimate)" : "";
    if (item.range_km !== null && item.range_km !== undefined)
      return `about ${num(item.range_km, 0)} km range${guess}`;
    if (item.runtime_h !== null && item.runtime_h !== undefined)
      return `about ${num(item.runtime_h, item.runtime_h >= 10 ? 0 : 1)} h runtime${guess}`;
    return null;
  }

  function chargeBar(item) {
    const pct = item.charge_pct;
    const known = pct !== null && pct !== undefined;
    const fill = h("span", { class: "fill" });
    fill.style.width = `${known ? Math.max(0, Math.min(100, pct)) : 0}%`;
    const bar = h("span", { class: "bar", "aria-hidden": "true" }, fill);
    if (item.needed_pct !== null && item.needed_pct !== undefined) {
      const mark = h("span", { class: "needed" });
      mark.style.left = `${Math.max(0, Math.min(100, item.needed_pct))}%`;
      bar.append(mark);
    }
    const words = known ? `${num(pct, 0)} %` : "charge unknown";
    return h(
      "div",
      { class: "charge" },
      bar,
      h("span", { class: "pct" }, words, item.charging ? h("span", { class: "plug", text: " charging" }) : null),
    );
  }

  function alertList(item, onAck) {
    if (!item.alerts || item.alerts.length === 0) return null;
    return h(
      "ul",
      { class: "alerts" },
      item.alerts.map((a) =>
        h(
          "li",
          { class: `alert ${a.severity}` },
          h("strong", { text: a.severity === "critical" ? "Critical" : "Warning" }),
          `: ${a.message}`,
          a.acknowledged_by ? h("span", { class: "acked", text: ` (acknowledged by ${a.acknowledged_by})` }) : null,
          !a.acknowledged_by && onAck
            ? h("button", {
                type: "button",
                class: "small",
                "data-action": `ack-${a.rule}`,
                text: "Acknowledge",
                onclick: (ev) => onAck(item, a, ev.currentTarget),
              })
            : null,
        ),
      ),
    );
  }

  // One device tile; `actions` (signed in) adds the controls, `link` the device page link.
  function tile(item, ageS, opts) {
    const o = opts || {};
    const name = item.name && item.name !== item.device ? `${item.name}` : item.device;
    const title = o.link
      ? h("a", { href: `/device/${encodeURIComponent(item.device)}`, text: name })
      : name;
    const sub = item.name && item.name !== item.device ? `${item.device} · ${item.kind}` : item.kind;
    const lines = [];
    const left = remaining(item);
    if (left) lines.push(h("p", { class: "left", text: left }));
    if (item.ready_at) lines.push(h("p", { class: "when", text: `Ready at ${clock(item.ready_at)}` }));
    if (item.full_at) lines.push(h("p", { class: "when", text: `Full at ${clock(item.full_at)}` }));
    if (item.signed_out_to) {
      lines.push(
        h(
          "p",
          { class: item.overdue ? "who overdue" : "who" },
          `With ${item.signed_out_to}`,
          item.due_back ? ` · due back ${clock(item.due_back)}` : "",
          item.overdue ? h("strong", { class: "flag", text: " OVERDUE" }) : null,
        ),
      );
    }
    if (item.out_of_service) {
      const o2 = item.out_of_service;
      lines.push(h("p", { class: "oos", text: `Out of service: ${o2.reason} (${o2.by})` }));
    }
    const seen = h(
      "p",
      { class: item.stale ? "seen stale" : "seen" },
      h("span", { class: "seen-text", text: `Last seen ${ago(ageS)}` }),
      item.stale ? h("strong", { class: "flag", text: " STALE" }) : null,
    );
    return h(
      "article",
      {
        class: `tile state-${item.state} colour-${item.colour}`,
        "data-device": item.device,
        "data-state": item.state,
        "aria-label": `${name}: ${item.label}`,
      },
      h(
        "header",
        null,
        h("h2", null, title, h("span", { class: "kind", text: sub })),
        h("p", { class: "state", text: item.label }),
      ),
      h("p", { class: "reason", text: item.reason }),
      chargeBar(item),
      lines,
      seen,
      alertList(item, o.onAck),
      o.actions || null,
      h("p", { class: "error", role: "alert", "data-error": "" }),
    );
  }

  // Calls `load` now and every `intervalMs`; `load` resolves to {ok, error, newestAgeS}.
  // The banner says when the collector stops answering or its newest data is old, and
  // goes away by itself when fresh data comes back.
  function poll(load, intervalMs, staleAfterS) {
    const banner = document.getElementById("lost");
    const updated = document.getElementById("updated");
    let lastOk = null;
    let timer = null;
    async function once() {
      clearTimeout(timer);
      const res = await load();
      if (res.status === 401 && !kiosk()) {
        // Reading needs a login here (http.public_read = false); a kiosk shows the reason.
        location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
        return;
      }
      let problem = null;
      if (res.ok) {
        lastOk = new Date();
        updated.textContent = `Last updated ${hms(lastOk)}`;
        if (res.newestAgeS !== null && res.newestAgeS !== undefined && res.newestAgeS > staleAfterS)
          problem = `No new readings for ${ago(res.newestAgeS).replace(" ago", "")}: the collector hears nothing from the devices. Showing the last known values.`;
      } else if (res.status === 0 || res.status >= 500) {
        const since = lastOk ? ` since ${hms(lastOk)}` : "";
        problem = `Connection lost${since}: ${res.error}. Retrying every ${intervalMs / 1000} s.`;
      } else {
        problem = res.error;
      }
      banner.hidden = problem === null;
      banner.textContent = problem || "";
      document.body.classList.toggle("lost", problem !== null);
      timer = setTimeout(once, intervalMs);
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) once();
    });
    once();
    return once;
  }

  async function accountBar() {
    const who = document.getElementById("who");
    const login = document.getElementById("login");
    const logout = document.getElementById("logout");
    if (kiosk()) {
      for (const el of [who, login, logout]) if (el) el.hidden = true;
      return null;
    }
    const user = await loadSession();
    if (who) who.textContent = user ? `Signed in as ${user}` : "";
    if (login) {
      login.hidden = Boolean(user);
      login.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
    }
    if (logout) {
      logout.hidden = !user;
      logout.onclick = async () => {
        await api("DELETE", "/api/v1/session");
        location.reload();
      };
    }
    return user;
  }

  return { h, api, loadSession, accountBar, signedIn, kiosk, clock, hms, ago, tile, poll, state, num, nextClockIso };
})();
