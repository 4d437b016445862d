// Sign in: POST /api/v1/session, then back to where the person came from (this site only).
"use strict";

(() => {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");

  function next() {
    const wanted = new URLSearchParams(location.search).get("next") || "/";
    // Only a path on this site: "//evil.example" or "https://..." would leave it.
    return wanted.startsWith("/") && !wanted.startsWith("//") && !wanted.startsWith("/\\") ? wanted : "/";
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const data = new FormData(form);
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const res = await Fleet.api("POST", "/api/v1/session", {
      user: String(data.get("user") || ""),
      password: String(data.get("password") || ""),
    });
    button.disabled = false;
    if (res.ok) {
      location.href = next();
    } else {
      error.textContent = res.error;
      form.querySelector("#password").value = "";
    }
  });
})();
