// The site chooser: adds each site's counts, and sites heard but not named in the config.
"use strict";

(() => {
  const { h } = Fleet;
  const list = document.getElementById("sites");
  const kiosk = Fleet.kiosk() ? "&kiosk=1" : "";

  async function load() {
    const res = await Fleet.api("GET", "/api/v1/sites");
    if (!res.ok || !Array.isArray(res.data)) return;
    for (const site of res.data) {
      let link = list.querySelector(`a[data-site="${CSS.escape(site.site)}"]`);
      if (!link) {
        link = h("a", { class: "site", href: `/?site=${encodeURIComponent(site.site)}${kiosk}`, "data-site": site.site, text: site.name || site.site });
        list.append(h("li", null, link));
      }
      const counts = Object.entries(site.by_state || {})
        .map(([state, n]) => `${n} ${state.replace(/_/g, " ")}`)
        .join(", ");
      let detail = link.querySelector(".counts");
      if (!detail) {
        detail = h("span", { class: "counts" });
        link.append(detail);
      }
      detail.textContent = `${site.devices} devices${counts ? `: ${counts}` : ""}`;
    }
  }

  load();
})();
