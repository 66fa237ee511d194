// The try-it page: send the chosen image to POST /v1/classify and draw the answer.
// Plain DOM code, no dependencies; text goes in with textContent only (labels are data, not HTML).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, controller: null, previewUrl: null };

function choice(name) {
  return document.querySelector(`input[name="${name}"]:checked`).value;
}

function ms(value) {
  return value < 10 ? `${value.toFixed(2)} ms` : `${value.toFixed(1)} ms`;
}

function percent(p) {
  return p >= 0.001 ? `${(p * 100).toFixed(1)}%` : `${(p * 100).toExponential(1)}%`;
}

async function loadModels() {
  try {
    const res = await fetch("/v1/models");
    const body = await res.json();
    if (!res.ok) throw new Error(body.error || res.statusText);
    const members = body.members.length;
    $("single-name").textContent = body.primary;
    $("ensemble-size").textContent = `${members} model${members === 1 ? "" : "s"} averaged`;
    $("server").textContent = `${body.name} · ${members} model${members === 1 ? "" : "s"} · ${body.provider.toUpperCase()}`;
    $("server").classList.add("ok");
  } catch (err) {
    $("server").textContent = "models not ready";
    $("server").classList.add("bad");
  }
}

function pick(file) {
  if (!file) return;
  state.file = file;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  const preview = $("preview");
  preview.hidden = false;
  preview.src = state.previewUrl;
  preview.alt = file.name;
  $("drop").classList.add("has-image");
  $("file-name").textContent = `${file.name} · ${(file.size / 1024).toFixed(1)} KiB · ${file.type || "unknown type"}`;
  $("run").disabled = false;
  classify();
}

function showError(status, body, text) {
  $("results").replaceChildren();
  $("stats").hidden = true;
  $("untrained").hidden = true;
  $("placeholder").hidden = true;
  $("error").hidden = false;
  const code = body && body.code ? ` · ${body.code}` : "";
  $("error-title").textContent = status ? `Rejected: HTTP ${status}${code}` : "The request did not reach the server";
  $("error-message").textContent = body && body.error ? body.error : text || "no answer";
  $("error-json").textContent = body ? JSON.stringify(body, null, 2) : text || "";
}

function showResult(body, roundTripMs) {
  $("error").hidden = true;
  $("placeholder").hidden = true;
  const best = body.predictions[0] ? body.predictions[0].probability : 1;
  const rows = body.predictions.map((p, i) => {
    const li = document.createElement("li");
    li.className = "row";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = p.label;
    label.title = `class ${p.index}${p.wnid ? ` · ${p.wnid}` : ""}`;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(p.probability);
    const track = document.createElement("span");
    track.className = "track";
    const bar = document.createElement("span");
    bar.className = i === 0 ? "bar first" : "bar";
    // Bars are relative to the best class, so the ranking reads at a glance; the number is absolute.
    bar.style.width = `${Math.max(1, (p.probability / best) * 100)}%`;
    track.append(bar);
    li.append(label, value, track);
    return li;
  });
  $("results").replaceChildren(...rows);
  const t = body.timings_ms;
  const image = body.results[0] || {};
  const evaluations = image.evaluations ?? body.evaluations;
  const walk = body.adaptive || body.partial; // the image climbed rungs: say where it stopped and why
  $("evaluations").textContent = walk
    ? `${evaluations}`
    : `${body.evaluations} (${body.crops} crop${body.crops === 1 ? "" : "s"} × ${body.members.length})`;
  $("walk-row").hidden = !walk;
  $("walk").textContent = walk ? `${image.rung ?? "no rung"} · ${(image.stop ?? "").replace("_", " ")}` : "";
  $("t-preprocess").textContent = ms(t.preprocess);
  $("t-queue").textContent = ms(t.queue);
  $("t-inference").textContent = ms(t.inference);
  $("t-total").textContent = ms(t.total);
  $("t-round").textContent = ms(roundTripMs);
  $("stats").hidden = false;
  $("untrained").hidden = body.trained;
  $("meta").textContent = `${body.members.join(", ")} · request ${body.request_id}`;
}

async function classify() {
  if (!state.file) return;
  if (state.controller) state.controller.abort(); // a newer choice replaces the request in flight
  const controller = (state.controller = new AbortController());
  const params = new URLSearchParams({ crops: choice("crops"), ensemble: choice("ensemble"), topk: "5" });
  document.body.classList.add("busy");
  $("run").disabled = true;
  const started = performance.now();
  try {
    const res = await fetch(`/v1/classify?${params}`, {
      method: "POST",
      headers: { "Content-Type": state.file.type || "application/octet-stream" },
      body: state.file,
      signal: controller.signal,
    });
    const text = await res.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (err) {
      body = null;
    }
    if (res.ok && body) showResult(body, performance.now() - started);
    else showError(res.status, body, text);
  } catch (err) {
    if (err.name !== "AbortError") showError(0, null, String(err));
  } finally {
    if (state.controller === controller) {
      state.controller = null;
      document.body.classList.remove("busy");
      $("run").disabled = false;
    }
  }
}

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => pick(e.target.files[0]));
  ["dragenter", "dragover"].forEach((type) =>
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    }),
  );
  ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    pick(e.dataTransfer.files[0]);
  });
  document.querySelectorAll('input[name="crops"], input[name="ensemble"]').forEach((el) =>
    el.addEventListener("change", classify),
  );
  $("run").addEventListener("click", classify);
  loadModels();
}

wire();
