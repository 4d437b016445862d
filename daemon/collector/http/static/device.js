// One device: its tile, every field, open alerts, the sign-out history and a 24 h chart of
// charge drawn as inline SVG from the item's `history` ([iso, pct, charging], oldest first).
"use strict";

(() => {
  const { h, api } = Fleet;
  const SVG = "http://www.w3.org/2000/svg";
  const POLL_MS = 15000;
  const device = document.body.dataset.device;

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const c of children) el.append(c);
    return el;
  }

  // 24 h of charge: the line, charging spans shaded, gridlines at 0/50/100 %.
  function chart(history, item) {
    const W = 600, H = 170, L = 44, R = 14, T = 10, B = 22;
    const end = Date.now();
    const start = end - 24 * 3600 * 1000;
    const x = (t) => L + ((t - start) / (end - start)) * (W - L - R);
    const y = (p) => T + (1 - p / 100) * (H - T - B);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img" });
    const points = history
      .map(([iso, pct, charging]) => [Date.parse(iso), pct, charging])
      .filter(([t, pct]) => Number.isFinite(t) && t >= start - 3600 * 1000 && pct !== null);
    const first = points.length ? Number(points[0][1]).toFixed(0) : null;
    const last = points.length ? Number(points[points.length - 1][1]).toFixed(0) : null;
    svg.append(
      s("title", {}, points.length
        ? `Charge over the last 24 hours: from ${first} % to ${last} %, ${points.length} readings`
        : "No charge readings in the last 24 hours"),
    );
    // Charging spans: from a charging reading to the next reading, merged into one band.
    let spanStart = null;
    for (let i = 0; i <= points.length; i++) {
      const charging = i < points.length && points[i][2];
      if (charging && spanStart === null) spanStart = points[i][0];
      if (!charging && spanStart !== null) {
        const x0 = Math.max(L, x(spanStart));
        const x1 = i < points.length ? x(points[i][0]) : x(end);
        if (x1 > x0) svg.append(s("rect", { class: "charging-span", x: x0, y: T, width: x1 - x0, height: H - T - B }));
        spanStart = null;
      }
    }
    for (const p of [0, 50, 100]) {
      svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: y(p), y2: y(p) }));
      svg.append(s("text", { class: "axis", x: L - 4, y: y(p) + 4, "text-anchor": "end" }, `${p}%`));
    }
    if (item.needed_pct !== null && item.needed_pct !== undefined) {
      svg.append(s("line", { class: "needed-line", x1: L, x2: W - R, y1: y(item.needed_pct), y2: y(item.needed_pct) }));
    }
    for (let hrs = 24; hrs >= 0; hrs -= 6) {
      const t = end - hrs * 3600 * 1000;
      const anchor = hrs === 24 ? "start" : hrs === 0 ? "end" : "middle";
      svg.append(s("text", { class: "axis", x: x(t), y: H - 6, "text-anchor": anchor }, hrs ? `-${hrs} h` : "now"));
    }
    if (points.length) {
      const d = points
        .map(([t, pct], i) => `${i ? "L" : "M"}${Math.max(L, x(t)).toFixed(1)},${y(pct).toFixed(1)}`)
        .join(" ");
      svg.append(s("path", { class: "line", d }));
      const [lt, lp] = points[points.length - 1];
      svg.append(s("circle", { class: "now", cx: Math.max(L, x(lt)).toFixed(1), cy: y(lp).toFixed(1), r: 4 }));
    }
    return svg;
  }

  function fact(dl, name, value) {
    if (value === null || value === undefined || value === "") return;
    dl.append(h("dt", { text: name }), h("dd", { text: String(value) }));
  }

  function facts(item) {
    const dl = document.getElementById("facts");
    dl.replaceChildren();
    const when = (iso) => (iso ? `${Fleet.clock(iso)} (${iso})` : null);
    fact(dl, "Device", item.device);
    fact(dl, "Name", item.name);
    fact(dl, "Kind", item.kind);
    fact(dl, "Site", item.site_name);
    fact(dl, "State", item.label);
    fact(dl, "Why", item.reason);
    fact(dl, "Charge", item.charge_pct === null ? "unknown" : `${item.charge_pct} %`);
    fact(dl, "Charging", item.charging === null ? null : item.charging ? "yes" : "no");
    fact(dl, "Needed for the shift", item.needed_pct === null ? null : `${item.needed_pct} %`);
    fact(dl, "Range", item.range_km === null ? null : `${item.range_km} km`);
    fact(dl, "Runtime", item.runtime_h === null ? null : `${item.runtime_h} h`);
    fact(dl, "Estimate from", item.estimate === "default" ? "the kind's default drain (too little history)" : item.estimate === "learned" ? "its own recent drain" : null);
    fact(dl, "Full at", when(item.full_at));
    fact(dl, "Ready at", when(item.ready_at));
    fact(dl, "Last seen", item.last_seen ? `${Fleet.ago(item.last_seen_age_s)}${item.stale ? " (stale)" : ""}, ${item.last_seen}` : "never");
    fact(dl, "Signed out to", item.signed_out_to);
    fact(dl, "Signed out at", when(item.signed_out_at));
    fact(dl, "Due back", item.due_back ? `${when(item.due_back)}${item.overdue ? " OVERDUE" : ""}` : null);
    if (item.out_of_service) {
      const o = item.out_of_service;
      fact(dl, "Out of service", `${o.reason} (by ${o.by}, since ${Fleet.clock(o.since)})`);
    }
  }

  function alerts(item) {
    const ul = document.getElementById("alerts");
    ul.replaceChildren();
    if (!item.alerts || item.alerts.length === 0) {
      ul.append(h("li", { text: "None." }));
      return;
    }
    for (const a of item.alerts) {
      ul.append(
        h("li", { class: `alert ${a.severity}` },
          h("strong", { text: a.severity === "critical" ? "Critical" : "Warning" }),
          `: ${a.message} (${a.rule}, since ${Fleet.clock(a.since)})`,
          a.acknowledged_by ? ` acknowledged by ${a.acknowledged_by}` : ""),
      );
    }
  }

  function history(rows) {
    const body = document.querySelector("#history tbody");
    body.replaceChildren();
    if (!rows || rows.length === 0) {
      body.append(h("tr", null, h("td", { colspan: 5, text: "Never signed out." })));
      return;
    }
    for (const r of rows) {
      const what = String(r.action || "").replace(/_/g, " ");
      const extra = r.reason || (r.due_back ? Fleet.clock(r.due_back) : "") || r.note || "";
      body.append(
        h("tr", null,
          h("td", { text: `${Fleet.clock(r.at)}` }),
          h("td", { text: what }),
          h("td", { text: r.officer || "" }),
          h("td", { text: r.by || "" }),
          h("td", { text: extra })),
      );
    }
  }

  async function load() {
    const res = await api("GET", `/api/v1/devices/${encodeURIComponent(device)}`, undefined, 6000);
    if (!res.ok) return res;
    const item = res.data;
    document.getElementById("name").textContent = item.name || item.device;
    document.title = `${item.name || item.device}: ${item.label}`;
    const back = document.getElementById("back");
    back.href = `/?site=${encodeURIComponent(item.site)}`;
    back.textContent = `Back to ${item.site_name}`;
    document.getElementById("summary-tile").replaceChildren(Fleet.tile(item, item.last_seen_age_s, {}));
    document.getElementById("chart").replaceChildren(chart(item.history || [], item));
    facts(item);
    alerts(item);
    history(item.assignments);
    return { ok: true, newestAgeS: null };
  }

  Fleet.accountBar().then(() => Fleet.poll(load, POLL_MS, Infinity));
})();
