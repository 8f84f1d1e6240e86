// Review page: each positive tile beside its seed CAM, BAC map, AR map and pseudo mask; A accepts, R rejects,
// arrows move; a click on a column header sorts the list (IoU: worst first, again for best first).
"use strict";

const state = { tiles: [], stages: [], available: {}, index: 0, sort: "name", descending: false, queue: Promise.resolve() };

function ordered() {
  const key = state.sort;
  const value = t => key === "iou" ? (t.iou === null ? Infinity : t.iou) : key === "decision" ? (t.decision || "") : t.name;
  const sorted = [...state.tiles].sort((a, b) => (value(a) < value(b) ? -1 : value(a) > value(b) ? 1 : a.name < b.name ? -1 : 1));
  return state.descending ? sorted.reverse() : sorted;
}

function renderList(resort = false) {
  // the list keeps its order until the next sort, so after a decision the next tile is the next row
  const body = document.getElementById("rows");
  body.innerHTML = "";
  if (resort || state.view === undefined) state.view = ordered();
  state.view.forEach((t, i) => {
    const row = document.createElement("tr");
    row.dataset.name = t.name;
    if (i === state.index) row.className = "current";
    const cells = [t.name, t.iou === null ? "" : t.iou.toFixed(3), t.decision || ""];
    cells.forEach((text, c) => {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (c === 2 && t.decision) cell.className = t.decision;
      row.appendChild(cell);
    });
    row.addEventListener("click", () => { state.index = i; renderList(); show(); });
    body.appendChild(row);
  });
  const current = body.querySelector("tr.current");
  if (current) current.scrollIntoView({ block: "nearest" });
  const decided = state.tiles.filter(t => t.decision).length;
  const rejected = state.tiles.filter(t => t.decision === "reject").length;
  document.getElementById("progress").textContent =
    `${decided.toLocaleString("en-US")} / ${state.tiles.length.toLocaleString("en-US")} reviewed, ${rejected} rejected`;
}

function show() {
  const t = state.view[state.index];
  const box = document.getElementById("pictures");
  box.innerHTML = "";
  if (t === undefined) { document.getElementById("tile-name").textContent = "no positive tiles listed"; return; }
  document.getElementById("tile-name").textContent = t.name;
  const decision = document.getElementById("decision");
  decision.textContent = t.decision || "undecided";
  decision.className = "decision " + (t.decision || "");
  document.getElementById("iou").textContent = t.iou === null ? "" : `pseudo-mask IoU ${t.iou.toFixed(3)}`;
  for (const stage of state.stages) {
    const figure = document.createElement("figure");
    if (state.available[stage.key]) {
      const img = document.createElement("img");
      img.alt = stage.title;
      img.src = `/review/picture/${stage.key}/${encodeURIComponent(t.name)}.png`;
      img.onerror = () => { const gap = document.createElement("div"); gap.className = "missing"; gap.textContent = "not made yet"; img.replaceWith(gap); };
      figure.appendChild(img);
    } else {
      const gap = document.createElement("div");
      gap.className = "missing";
      gap.textContent = "stage not run";
      figure.appendChild(gap);
    }
    const caption = document.createElement("figcaption");
    caption.textContent = stage.title;
    figure.appendChild(caption);
    box.appendChild(figure);
  }
}

function decide(decision) {
  const t = state.view[state.index];
  if (t === undefined) return;
  t.decision = decision;
  state.queue = state.queue.then(() => postJSON("/api/review", { name: t.name, decision }))
    .then(() => { document.getElementById("status").textContent = ""; document.body.dataset.saved = String(Date.now()); })
    .catch(showError);
  state.index = Math.min(state.index + 1, state.view.length - 1);
  renderList();
  show();
}

function move(step) {
  state.index = Math.max(0, Math.min(state.view.length - 1, state.index + step));
  renderList();
  show();
}

function onKey(key) {
  const k = key.length === 1 ? key.toLowerCase() : key;
  if (k === "a") decide("accept");
  else if (k === "r") decide("reject");
  else if (k === "ArrowLeft" || k === "ArrowUp") move(-1);
  else if (k === "ArrowRight" || k === "ArrowDown") move(1);
  else return false;
  return true;
}

async function load() {
  const data = await getJSON("/api/review");
  state.tiles = data.tiles;
  state.stages = data.stages;
  state.available = data.available;
  showFile(data.file);
  document.getElementById("thresholds").innerHTML = "";
  for (const t of data.thresholds) {
    const span = document.createElement("span");
    const background = t.background === undefined ? "" : ` / background ${t.background.toFixed(3)}`;
    span.textContent = `${t.stage}: threshold ${t.threshold.toFixed(3)}${background} (${t.rule})`;
    document.getElementById("thresholds").appendChild(span);
  }
  state.view = ordered();
  const open = state.view.findIndex(t => !t.decision);
  state.index = open >= 0 ? open : 0;
  renderList(true);
  show();
  document.body.dataset.ready = "1";
}

document.querySelectorAll("th[data-sort]").forEach(th => th.addEventListener("click", () => {
  const name = state.view[state.index] && state.view[state.index].name;
  state.descending = state.sort === th.dataset.sort ? !state.descending : false;
  state.sort = th.dataset.sort;
  state.view = ordered();
  state.index = Math.max(0, state.view.findIndex(t => t.name === name));
  renderList();
  show();
}));
document.addEventListener("keydown", event => {
  if (typingInField(event) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (onKey(event.key)) event.preventDefault();
});
document.querySelectorAll(".keys button").forEach(b => b.addEventListener("click", () => onKey(b.dataset.key)));
setupNav("review");
load().catch(showError);
