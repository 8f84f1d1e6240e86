// Shared by the three pages: the navigation bar and JSON requests (every POST carries X-Webapp: 1,
// which the server requires so that a page of another site cannot post answers).
"use strict";

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Webapp": "1" }, body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
  return response.json();
}

async function setupNav(current) {
  document.querySelectorAll("header nav a").forEach(a => {
    if (a.dataset.page === current) a.classList.add("current");
  });
  try {
    const info = await getJSON("/api/info");
    document.querySelectorAll("header nav a").forEach(a => { if (!info[a.dataset.page]) a.classList.add("off"); });
  } catch (err) { /* the page itself reports what is wrong */ }
}

function showError(err) {
  const box = document.getElementById("status");
  box.textContent = String(err.message || err);
  box.className = "error";
}

function typingInField(event) {
  const tag = event.target.tagName;
  return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA";
}

function showFile(path) {
  // the file's name on the page, its whole path on hover
  const box = document.getElementById("file");
  box.textContent = path.split("/").pop();
  box.title = path;
}
