// Label page: one tile at a time; B/N answer, S skips, U undoes this tab's last answer, arrows move.
// Every answer is posted at once (in order, one after the other) and the server saves it atomically.
"use strict";

const state = { tiles: [], labels: {}, probabilities: {}, index: 0, history: [], queue: Promise.resolve() };
const WORDS = { 1: "building", 0: "none" };

function show() {
  const image = document.getElementById("tile-image");
  const name = state.tiles[state.index];
  if (name === undefined) {
    document.getElementById("tile-name").textContent = "no tiles in the folder";
    return;
  }
  image.src = `/tile/${encodeURIComponent(name)}`;
  const next = state.tiles[state.index + 1];
  if (next !== undefined) new Image().src = `/tile/${encodeURIComponent(next)}`;
  const label = state.labels[name];
  image.className = label === undefined ? "" : WORDS[label];
  document.getElementById("tile-name").textContent = name;
  document.getElementById("position").textContent = `${state.index + 1} / ${state.tiles.length}`;
  const answer = document.getElementById("answer");
  answer.textContent = label === undefined ? "not labelled" : WORDS[label];
  answer.className = "answer " + (label === undefined ? "" : WORDS[label]);
  const p = state.probabilities[name];
  document.getElementById("probability").textContent = p === undefined ? "" : `classifier: ${(100 * p).toFixed(0)}% building`;
}

function showProgress(p) {
  document.getElementById("progress").textContent = p.line;
}

function send(name, label) {
  // answers go out one after the other, so an undo can never overtake the answer it takes back
  state.queue = state.queue.then(() => postJSON("/api/label", { name, label }))
    .then(showProgress)
    .then(() => { document.getElementById("status").textContent = ""; document.body.dataset.saved = String(Date.now()); })
    .catch(showError);
}

function answer(label) {
  const name = state.tiles[state.index];
  if (name === undefined) return;
  const previous = name in state.labels ? state.labels[name] : null;
  state.history.push({ name, previous, index: state.index });
  if (label === null) delete state.labels[name]; else state.labels[name] = label;
  send(name, label);
  move(1);
}

function undo() {
  const last = state.history.pop();
  if (last === undefined) return;
  if (last.previous === null) delete state.labels[last.name]; else state.labels[last.name] = last.previous;
  send(last.name, last.previous);
  state.index = last.index;
  show();
}

function move(step) {
  state.index = Math.max(0, Math.min(state.tiles.length - 1, state.index + step));
  show();
}

function onKey(key) {
  const k = key.length === 1 ? key.toLowerCase() : key;
  if (k === "b") answer(1);
  else if (k === "n") answer(0);
  else if (k === "s") move(1);
  else if (k === "u") undo();
  else if (k === "ArrowLeft") move(-1);
  else if (k === "ArrowRight") move(1);
  else return false;
  return true;
}

async function load() {
  const order = document.getElementById("order").value;
  const data = await getJSON(`/api/label?order=${order}`);
  state.tiles = data.tiles;
  state.labels = data.labels;
  state.probabilities = data.probabilities;
  const firstOpen = state.tiles.findIndex(n => !(n in state.labels));   // resume where labelling stopped
  state.index = firstOpen >= 0 ? firstOpen : Math.max(0, state.tiles.length - 1);
  showProgress(data);
  showFile(data.file);
  document.getElementById("classifier").textContent = data.classifier;
  document.querySelector("#order option[value=uncertain]").disabled = !data.uncertain_ready;
  show();
  document.body.dataset.ready = "1";
}

document.addEventListener("keydown", event => {
  if (typingInField(event) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (onKey(event.key)) event.preventDefault();
});
document.querySelectorAll(".keys button").forEach(b => b.addEventListener("click", () => onKey(b.dataset.key)));
document.getElementById("order").addEventListener("change", event => { event.target.blur(); load().catch(showError); });

async function pollClassifier() {
  // the probabilities come from a background thread; offer the order once they are all there
  const data = await getJSON("/api/label");
  document.getElementById("classifier").textContent = data.classifier;
  document.querySelector("#order option[value=uncertain]").disabled = !data.uncertain_ready;
  state.probabilities = data.probabilities;
  if (!data.uncertain_ready && !data.classifier.startsWith("no classifier") && !data.classifier.includes("failed")) {
    setTimeout(() => pollClassifier().catch(showError), 3000);
  }
}
setTimeout(() => pollClassifier().catch(showError), 3000);
setupNav("label");
load().catch(showError);
