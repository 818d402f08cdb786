// gpsgpu serve: the page. Plain JS, no build step, no outside requests: everything comes from /api/v1.
"use strict";

const API = "/api/v1";
const NO_WINDOWS = " No distance windows loaded (start gpsgpu serve with --dist DIST/).";
const $ = (id) => document.getElementById(id);
let windows = [];
let hasModel = false;
let hasPlan = false;

async function getJSON(path) {
  const response = await fetch(API + path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail
      : (body.detail || []).map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ");
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function portLink(port) {
  const a = document.createElement("a");
  a.href = `#port=${port}`;
  a.textContent = String(port);
  a.addEventListener("click", (event) => {
    event.preventDefault();
    $("port").value = port;
    search();
  });
  return a;
}

function fillWindows() {
  const source = $("source").value;
  const select = $("window");
  const previous = select.value;
  select.replaceChildren();
  for (const w of windows.filter((w) => w.source === source)) {
    select.add(new Option(`${w.window} (${w.first_day || "?"} … ${w.last_day || "?"})`, w.window));
  }
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
  updateDownloads();
}

function updateDownloads() {
  const base = `${API}/distances/${encodeURIComponent($("source").value)}/${encodeURIComponent($("window").value)}/download`;
  $("download-csv").href = `${base}?format=csv`;
  $("download-parquet").href = `${base}?format=parquet`;
}

function drawChart(neighbors) {
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  const barHeight = 16;
  const width = 360;
  const labelWidth = 52;
  svg.replaceChildren();
  svg.setAttribute("height", String(Math.max(40, neighbors.length * (barHeight + 4) + 4)));
  const max = Math.max(...neighbors.map((n) => n.distance), 1e-9);
  neighbors.forEach((n, i) => {
    const y = 2 + i * (barHeight + 4);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "0");
    label.setAttribute("y", String(y + barHeight - 4));
    label.textContent = String(n.port);
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("x", String(labelWidth));
    bar.setAttribute("y", String(y));
    bar.setAttribute("height", String(barHeight));
    bar.setAttribute("width", String(Math.max(1, ((width - labelWidth - 60) * n.distance) / max)));
    const title = document.createElementNS(ns, "title");
    title.textContent = `${n.port}: ${n.distance}`;
    bar.append(title);
    const value = document.createElementNS(ns, "text");
    value.setAttribute("x", String(labelWidth + 4 + ((width - labelWidth - 60) * n.distance) / max));
    value.setAttribute("y", String(y + barHeight - 4));
    value.textContent = n.distance.toFixed(2);
    svg.append(label, bar, value);
  });
}

async function showNeighbors(port, k) {
  const source = $("source").value;
  const win = $("window").value;
  if (!win) throw new Error(`no ${source} window loaded`);
  const data = await getJSON(
    `/distances/${encodeURIComponent(source)}/${encodeURIComponent(win)}/neighbors/${port}?k=${k}`);
  $("nearest-title").textContent =
    `of ${data.port} · ${data.source}/${data.window}${data.observed ? "" : " · not observed"}`;
  const body = $("neighbors").tBodies[0];
  body.replaceChildren();
  data.neighbors.forEach((n, i) => {
    const row = body.insertRow();
    row.dataset.port = String(n.port);
    cell(row, String(i + 1));
    cell(row, "").append(portLink(n.port));
    cell(row, n.distance.toFixed(6));
  });
  drawChart(data.neighbors);
  return data;
}

async function showPredictors(port) {
  if (!hasModel) return;
  const data = await getJSON(`/model/ports/${port}/predictors?limit=15`);
  $("model-summary").dataset.n = String(data.n_predictors);
  $("model-summary").textContent =
    `${data.n_predictors} predictors of port ${port} (${data.predictors.length} shown); ` +
    `${data.n_unpredicted} seed services on it had none.`;
  const body = $("predictors").tBodies[0];
  body.replaceChildren();
  for (const p of data.predictors) {
    const row = body.insertRow();
    cell(row, "").append(portLink(p.port));
    cell(row, p.kind, "text kind");
    cell(row, p.label, "text label").title = `${p.label}\n${p.feature}`; // the stored string on hover
    cell(row, p.hitrate.toFixed(4));
    cell(row, String(p.count_p2));
    cell(row, String(p.cp_server));
    cell(row, String(p.n_services));
  }
}

async function showPlan(port) {
  if (!hasPlan) return null;
  const data = await getJSON(`/plan/ports/${port}?limit=5`);
  const shown = data.rows.map((r) => r.cidr).join(", ");
  $("plan-summary").textContent = data.n_rows
    ? `${data.n_rows} plan rows scan port ${port}, first: ${shown}${data.n_rows > data.rows.length ? ", …" : ""}`
    : `the plan does not scan port ${port}.`;
  return data;
}

function showPlanBudget(plan) {
  // The plan's ports in plan order (the first ones), with their share of the probes.
  const body = $("plan-budget").tBodies[0];
  body.replaceChildren();
  for (const b of plan.ports.slice(0, 12)) {
    const row = body.insertRow();
    row.dataset.port = String(b.port);
    cell(row, "").append(portLink(b.port));
    cell(row, String(b.rows));
    cell(row, b.probes.toLocaleString("en"));
    cell(row, `${(100 * b.share).toFixed(1)}%`);
    cell(row, String(b.first_row));
  }
  $("plan-more").textContent = plan.ports.length > 12 ? `… and ${plan.ports.length - 12} more ports.` : "";
}

// The neighbours, the predictors and the plan rows of a port load side by side: each shows what its
// store has, so a server with only a model and a plan (the demo's output) still fills its sections.
async function search() {
  const port = Number($("port").value);
  const k = Number($("k").value || 10);
  setStatus(`Searching port ${port}…`);
  delete $("status").dataset.port;
  try {
    const [data, , plan] = await Promise.all([
      windows.length ? showNeighbors(port, k) : null, showPredictors(port), showPlan(port)]);
    history.replaceState(null, "", `#port=${port}`);
    const parts = [];
    if (data) parts.push(`${data.neighbors.length} nearest ports of ${port} (${data.source}/${data.window})`);
    if (hasModel) parts.push(`${$("model-summary").dataset.n} predictors of ${port}`);
    if (plan) parts.push(`${plan.n_rows} plan rows for ${port}`);
    setStatus(`${parts.join("; ")}.${windows.length ? "" : NO_WINDOWS}`);
    $("status").dataset.port = String(port); // tells a waiting test (or script) the search is done
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function compare() {
  const a = Number($("port-a").value);
  const b = Number($("port-b").value);
  const out = $("compare-result");
  out.className = "";
  try {
    let text = "";
    if (windows.length) {
      const source = encodeURIComponent($("source").value);
      const win = encodeURIComponent($("window").value);
      const d = await getJSON(`/distances/${source}/${win}/distance/${a}/${b}`);
      text = d.distance === null
        ? `${a} and ${b} are not connected in ${d.source}/${d.window}.`
        : `distance(${a}, ${b}) = ${d.distance} in ${d.source}/${d.window}.`;
    }
    if (hasModel) {
      try {
        const [ab, ba] = await Promise.all([getJSON(`/model/conditional/${a}/${b}`),
          getJSON(`/model/conditional/${b}/${a}`)]);
        const fmt = (c) => (c.probability === null ? "n/a" : c.probability.toFixed(3));
        text += `${text ? " " : ""}P(${a}|${b}) = ${fmt(ab)} (${ab.n_both}/${ab.n_b} hosts), ` +
          `P(${b}|${a}) = ${fmt(ba)}.`;
      } catch (error) {
        text += ` (${error.message})`;
      }
    }
    out.textContent = text || "Nothing loaded to compare two ports with.";
  } catch (error) {
    out.textContent = error.message;
    out.className = "error";
  }
}

async function start() {
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  $("compare-form").addEventListener("submit", (event) => { event.preventDefault(); compare(); });
  const refresh = () => { search(); if ($("compare-result").textContent) compare(); };
  $("source").addEventListener("change", () => { fillWindows(); refresh(); });
  $("window").addEventListener("change", () => { updateDownloads(); refresh(); });
  try {
    const [version, health, loaded] = await Promise.all([
      getJSON("/version"), getJSON("/health"), getJSON("/distances/windows")]);
    $("version").textContent = `gpsgpu ${version.gpsgpu}`;
    windows = loaded;
    hasModel = health.model;
    hasPlan = health.plan;
    for (const source of [...new Set(windows.map((w) => w.source))]) {
      $("source").add(new Option(source, source));
    }
    fillWindows();
    if (!windows.length) {
      for (const id of ["nearest", "source-label", "window-label", "k-label"]) $(id).hidden = true;
    }
    if (hasModel) {
      const model = await getJSON("/model");
      $("model-title").textContent = `${model.name} · ${model.preset || ""}`;
      const c = model.counts;
      const seed = c.n_services === undefined ? ""
        : `learnt from ${c.n_services.toLocaleString("en")} seed services on ${(c.n_hosts ?? 0).toLocaleString("en")} hosts; `;
      $("model-info").textContent =
        `${seed}${model.rules.toLocaleString("en")} rules, ${model.predictor_rows.toLocaleString("en")} predictors.`;
      $("model").hidden = false;
    }
    if (hasPlan) {
      const plan = await getJSON("/plan");
      $("plan-title").textContent = `${plan.name} · ${plan.rows} rows of /${plan.step}, ${plan.ports.length} ports`;
      showPlanBudget(plan);
      $("plan").hidden = false;
    }
    const fromHash = /port=(\d+)/.exec(location.hash);
    if (fromHash) $("port").value = fromHash[1];
    if (windows.length || hasModel || hasPlan) {
      await search();
    } else {
      setStatus(`Nothing loaded.${NO_WINDOWS}`);
    }
  } catch (error) {
    setStatus(error.message, true);
  }
}

document.addEventListener("DOMContentLoaded", start);
