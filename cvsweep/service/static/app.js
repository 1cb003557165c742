// cvsweep's one page: the sweep list, the form that starts a sweep and the view of one sweep.
// Plain ES2020, no framework. Server text only ever goes through textContent (never innerHTML),
// and links only take same-origin paths, so nothing the server returns can run as code here.
"use strict";

const LIST_POLL_MS = 2000;
const VIEW_POLL_MS = 2000;
const EVENT_THROTTLE_MS = 500;
const ACTIVE = new Set(["queued", "running"]);
const SWEEP_EVENTS = ["status", "trial_started", "epoch", "trial_finished", "trial_pruned", "trial_failed",
  "sweep_finished"];

const byId = (id) => document.getElementById(id);
const NARROW = window.matchMedia("(max-width: 999px)");  // style.css: two columns from 1000px

const state = {
  options: null,
  sweepId: null,       // the sweep the view shows
  events: null,        // its EventSource
  viewTimer: null,
  listTimer: null,
  refreshPending: null,
  lastRefresh: 0,
};

class HttpError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// fetch with the session cookie; JSON in and out; a non-2xx answer throws HttpError with the body.
async function api(path, { method = "GET", body } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!response.ok) {
    if (response.status === 401) showLogin();
    throw new HttpError(response.status, data);
  }
  return data;
}

function errorText(error) {
  if (error instanceof HttpError) {
    const detail = error.body && error.body.detail;
    return typeof detail === "string" ? `${error.status}: ${detail}` : `the server answered ${error.status}`;
  }
  return `cannot reach the server (${error.message})`;
}

// Only same-origin paths ("/sweeps/..."): a URL from the server never becomes javascript: or another site.
function safeHref(url) {
  return typeof url === "string" && url.startsWith("/") && !url.startsWith("//") ? url : null;
}

function setLink(link, url) {
  const href = safeHref(url);
  link.hidden = href === null;
  if (href === null) link.removeAttribute("href");
  else link.href = href;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);  // append() inserts strings as text
  }
  return node;
}

function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(digits);
  return String(value);
}

const SHORT_TIME = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };

function fmtTime(iso, short = false) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return short ? date.toLocaleString(undefined, SHORT_TIME) : date.toLocaleString();
}

function statusBadge(status) {
  return el("span", { className: `status status-${status}` }, status);
}

// ---- session -------------------------------------------------------------------------------

function showLogin() {
  byId("login").hidden = false;
  byId("content").hidden = true;
  stopTimers();
  byId("token").focus();
}

async function login(event) {
  event.preventDefault();
  const error = byId("login-error");
  error.textContent = "";
  try {
    await api("/session", { method: "POST", body: { token: byId("token").value } });
  } catch (e) {
    error.textContent = e instanceof HttpError && e.status === 401 ? "Wrong token." : errorText(e);
    return;
  }
  byId("token").value = "";
  byId("login").hidden = true;
  await start();
}

// ---- the form ----------------------------------------------------------------------------

function fillSelect(select, values, chosen, describe = (v) => ({ text: v })) {
  select.replaceChildren(...values.map((value) => {
    const { text, title } = describe(value);
    const option = el("option", { value: typeof value === "string" ? value : value.name }, text);
    if (title) option.title = title;
    return option;
  }));
  select.value = chosen;
}

function buildForm(options) {
  const groups = byId("group-fields");
  groups.replaceChildren();
  for (const [group, names] of Object.entries(options.groups)) {
    const select = el("select", { id: group, name: group });
    fillSelect(select, names, options.defaults[group]);
    groups.append(el("div", { className: "field" }, el("label", { htmlFor: group }, group[0].toUpperCase() + group.slice(1)), select));
  }
  fillSelect(byId("objective"), options.objectives, options.defaults.objective,
    (o) => ({ text: `${o.name} (${o.direction === "minimize" ? "min" : "max"})`, title: o.description }));
  fillSelect(byId("pruner"), options.pruners, options.defaults.pruner);
  byId("n-trials").value = options.defaults.n_trials;
  updatePreview();
}

// What a user would type after `cvsweep -m`: only the choices that differ from the defaults.
function formOverrides() {
  const { groups, defaults } = state.options;
  const overrides = [];
  for (const group of Object.keys(groups)) {
    const value = byId(group).value;
    if (value !== defaults[group]) overrides.push(`${group}=${value}`);
  }
  const objective = byId("objective").value;
  if (objective !== defaults.objective) overrides.push(`objective=${objective}`);
  const pruner = byId("pruner").value;
  if (pruner !== defaults.pruner) overrides.push(`hydra/sweeper/pruner=${pruner}`);
  const trials = byId("n-trials").value.trim();
  if (trials !== "" && trials !== String(defaults.n_trials)) overrides.push(`hydra.sweeper.n_trials=${trials}`);
  for (const line of byId("extra-overrides").value.split("\n")) {
    if (line.trim()) overrides.push(line.trim());
  }
  return overrides;
}

function updatePreview() {
  const overrides = formOverrides();
  byId("overrides-preview").textContent = overrides.length ? overrides.join(" ") : "(the defaults)";
}

function showFormErrors(messages) {
  byId("form-errors").replaceChildren(...(messages.length
    ? [el("ul", {}, ...messages.map(({ key, msg }) => el("li", {}, key ? el("code", {}, key) : null,
      key ? ": " : null, msg)))]
    : []));
}

async function submitSweep(event) {
  event.preventDefault();
  const button = byId("start");
  button.disabled = true;
  showFormErrors([]);
  try {
    const created = await api("/sweeps", { method: "POST", body: { overrides: formOverrides() } });
    await refreshList();
    openSweep(created.id);
  } catch (e) {
    if (e instanceof HttpError && e.status === 422 && Array.isArray(e.body && e.body.detail)) {
      showFormErrors(e.body.detail.map((d) => ({ key: d.key ?? null, msg: String(d.msg) })));
    } else {
      showFormErrors([{ key: null, msg: errorText(e) }]);
    }
  } finally {
    button.disabled = false;
  }
}

// ---- the sweep list ----------------------------------------------------------------------

function progressBar(progress) {
  const total = Math.max(progress.total, 1);
  return el("progress", { max: total, value: Math.min(progress.finished, total),
    title: `${progress.finished} of ${progress.total} finished` });
}

function sweepRow(sweep) {
  const open = el("a", { href: `#sweep=${encodeURIComponent(sweep.id)}` }, sweep.id);
  const best = sweep.best ? fmt(sweep.best.objective) : "—";
  const row = el("tr", { dataset: { sweepId: sweep.id } },
    el("td", {}, open),
    el("td", { className: "progress-cell" }, statusBadge(sweep.status), el("br"), progressBar(sweep.progress),
      ` ${sweep.progress.finished}/${sweep.progress.total}`),
    el("td", { title: sweep.best ? `job ${sweep.best.job}` : "" }, best),
    el("td", { className: "time" }, fmtTime(sweep.started_at || sweep.created_at, true)));
  if (sweep.id === state.sweepId) row.setAttribute("aria-current", "true");
  row.addEventListener("click", (event) => {
    if (event.ctrlKey || event.metaKey || event.shiftKey) return;  // the link opens another tab or window
    event.preventDefault();
    openSweep(sweep.id);
  });
  return row;
}

async function refreshList() {
  const error = byId("sweep-list-error");
  try {
    const [{ sweeps }, health] = await Promise.all([api("/sweeps"), api("/health")]);
    byId("sweep-list").tBodies[0].replaceChildren(...sweeps.map(sweepRow));
    byId("sweep-list-empty").hidden = sweeps.length > 0;
    byId("health").textContent = `${health.running} running, ${health.queued} queued, at most ${health.max_running} at once`;
    error.textContent = "";
  } catch (e) {
    error.textContent = `Cannot load the sweeps: ${errorText(e)}`;
  }
}

// ---- one sweep ---------------------------------------------------------------------------

function openSweep(id) {
  const hash = `#sweep=${encodeURIComponent(id)}`;
  if (location.hash !== hash) location.hash = hash;  // routeFromHash does the rest
  else showSweep(id);
  // One column (a narrow window): the view sits below the list, so bring it up.
  if (NARROW.matches) byId("sweep-view").scrollIntoView();
}

function routeFromHash() {
  const match = /^#sweep=(.+)$/.exec(location.hash);
  if (match) showSweep(decodeURIComponent(match[1]));
  else closeSweep();
}

function closeSweep() {
  state.sweepId = null;
  if (state.events) state.events.close();
  state.events = null;
  clearInterval(state.viewTimer);
  clearTimeout(state.refreshPending);
  state.refreshPending = null;
  byId("sweep-view").hidden = true;
  byId("no-sweep").hidden = false;
  for (const row of byId("sweep-list").querySelectorAll("tr[aria-current]")) row.removeAttribute("aria-current");
}

function showSweep(id) {
  if (state.sweepId === id) return;
  closeSweep();
  state.sweepId = id;
  byId("sweep-view").hidden = false;
  byId("no-sweep").hidden = true;
  byId("sweep-id").textContent = id;
  for (const node of ["sweep-status", "sweep-reason", "progress-text", "progress-counts", "view-error"]) {
    byId(node).textContent = "";
  }
  byId("running-trials").replaceChildren();
  byId("trials-table").tBodies[0].replaceChildren();
  byId("best-config").open = false;
  for (const row of byId("sweep-list").querySelectorAll("tr[data-sweep-id]")) {
    if (row.dataset.sweepId === id) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
  }
  state.viewTimer = setInterval(() => refreshSweep(), VIEW_POLL_MS);  // the fallback when events stall
  refreshSweep();
}

// Live updates: every event only says "something changed"; the sweep's own route is the truth.
function listen(sweep) {
  if (state.events || !ACTIVE.has(sweep.status)) return;
  const url = safeHref(sweep.links.events);
  if (!url) return;
  const source = new EventSource(url);
  for (const name of SWEEP_EVENTS) source.addEventListener(name, requestRefresh);
  // The stream ends after sweep_finished; without close() the browser would reconnect and replay it.
  source.addEventListener("sweep_finished", () => source.close());
  state.events = source;
}

function requestRefresh() {
  if (state.refreshPending) return;
  const wait = Math.max(0, state.lastRefresh + EVENT_THROTTLE_MS - Date.now());
  state.refreshPending = setTimeout(() => {
    state.refreshPending = null;
    refreshSweep();
  }, wait);
}

async function refreshSweep() {
  const id = state.sweepId;
  if (id === null) return;
  state.lastRefresh = Date.now();
  let sweep;
  try {
    sweep = await api(`/sweeps/${encodeURIComponent(id)}`);
  } catch (e) {
    if (id === state.sweepId) byId("view-error").textContent = `Cannot load sweep ${id}: ${errorText(e)}`;
    return;
  }
  if (id !== state.sweepId) return;  // the user opened another sweep meanwhile
  byId("view-error").textContent = "";
  const changed = byId("sweep-status").textContent !== sweep.status;
  renderSweep(sweep);
  if (changed) refreshList();  // the list and the counts in the header show the status too
  if (ACTIVE.has(sweep.status)) listen(sweep);
  else if (state.events) {
    state.events.close();
    state.events = null;
  }
}

function renderSweep(sweep) {
  const status = byId("sweep-status");
  status.textContent = sweep.status;
  status.className = `status status-${sweep.status}`;
  byId("sweep-reason").textContent = sweep.reason
    ? `(${sweep.reason}${sweep.exit_code !== null ? `, exit code ${sweep.exit_code}` : ""})` : "";

  const { progress } = sweep;
  const bar = byId("sweep-progress");
  bar.max = Math.max(progress.total, 1);
  bar.value = Math.min(progress.finished, bar.max);
  byId("progress-text").textContent = `${progress.finished} / ${progress.total} trials finished`;
  byId("progress-counts").textContent = `${progress.failed} failed, ${progress.pruned} pruned, `
    + `${progress.running.length} running` + spentText(sweep) + ` · started ${fmtTime(sweep.started_at)}`
    + (sweep.finished_at ? ` · ended ${fmtTime(sweep.finished_at)}` : "");
  byId("running-trials").replaceChildren(...progress.running.map((r) => el("li", { dataset: { job: r.job } },
    r.epochs ? `job ${r.job}: epoch ${r.epoch}/${r.epochs}` : `job ${r.job}: starting`,
    r.value !== null && r.value !== undefined ? `, ${r.metric} ${fmt(r.value)}` : "")));

  const { links } = sweep;
  setLink(byId("report-link"), links.report);
  setLink(byId("log-link"), links.log);
  setLink(byId("dashboard-link"), links.dashboard || "/dashboard/");
  byId("cancel").hidden = !ACTIVE.has(sweep.status);

  renderBest(sweep);
  renderTrials(sweep);
  byId("sweep-overrides").textContent = [
    `cvsweep -m ${sweep.overrides.join(" ")}`,
    `objectives: ${sweep.objectives.map((o, i) => `${o} (${sweep.directions[i] ?? "?"})`).join(", ")}`,
    `study: ${sweep.study.name} in ${sweep.study.storage}`,
    `created ${fmtTime(sweep.created_at)}`,
  ].join("\n");
}

function renderBest(sweep) {
  const { best } = sweep;
  byId("best-empty").hidden = best !== null;
  byId("best-body").hidden = best === null;
  if (best === null) return;
  byId("best-job").textContent = best.job;
  byId("best-objective-name").textContent = sweep.objectives[0] || "Objective";
  byId("best-objective").textContent = fmt(best.objective, 6);
  byId("best-test-accuracy").textContent = fmt(best.test_accuracy);
  byId("best-fingerprint").textContent = best.fingerprint;
  setLink(byId("best-model-link"), best.model_url);
  const json = JSON.stringify(best.config, null, 2);
  const pre = byId("best-config-json");
  if (pre.textContent !== json) pre.textContent = json;  // keeps a reader's scroll position
}

function trialLinks(trial) {
  const cell = el("td", { className: "files" });
  const result = safeHref(trial.result_url);
  const model = safeHref(trial.model_url);
  if (result) cell.append(el("a", { href: result, target: "_blank", rel: "noopener" }, "result"));
  if (model) cell.append(el("a", { href: model, download: "" }, "model"));
  return cell;
}

// What remote trials cost: absent for a trial that ran locally, null when its price is unknown.
function costText(cost) {
  if (cost === null) return "unknown";
  return cost >= 0.995 || cost === 0 ? `$${cost.toFixed(2)}` : `$${cost.toFixed(4)}`;
}

function spentText(sweep) {
  if (!("cost_usd" in sweep)) return "";
  const unknown = sweep.cost_unknown_trials ? ` (+ ${sweep.cost_unknown_trials} of unknown cost)` : "";
  return ` · spent ${sweep.cost_usd === null ? "unknown" : costText(sweep.cost_usd)}${sweep.cost_usd === null ? "" : unknown}`;
}

// The trials table has a Cost column only while some trial ran remotely.
function showCostColumn(shown) {
  const head = byId("trials-table").tHead.rows[0];
  const cell = head.querySelector("th.cost");
  if (shown && !cell) head.insertBefore(el("th", { scope: "col", className: "cost" }, "Cost"), head.cells[6]);
  if (!shown && cell) cell.remove();
}

function renderTrials(sweep) {
  const bestJob = sweep.best ? sweep.best.job : null;
  const priced = sweep.trials.some((trial) => "cost_usd" in trial);
  showCostColumn(priced);
  const rows = sweep.trials.map((trial) => {
    const params = Object.entries(trial.params || {}).map(([k, v]) => `${k}=${fmt(v)}`).join("\n");
    const row = el("tr", { dataset: { job: trial.job, status: trial.status } },
      el("td", {}, String(trial.job)),
      el("td", {}, statusBadge(trial.status)),
      el("td", {}, fmt(trial.objective)),
      el("td", {}, fmt(trial.test_accuracy)),
      el("td", {}, fmt(trial.epochs_run) + (trial.epochs_trained !== undefined
        && trial.epochs_trained !== trial.epochs_run ? ` (${trial.epochs_trained} trained)` : "")),
      el("td", {}, fmt(trial.train_seconds, 3)),
      priced ? el("td", { className: "cost", title: trial.billed_s !== undefined ? `${trial.billed_s} s billed` : "" },
        "cost_usd" in trial ? costText(trial.cost_usd) : "—") : null,
      el("td", { className: "params" }, params),
      trialLinks(trial));
    if (trial.reason) row.title = trial.reason;
    if (trial.job === bestJob) row.classList.add("best");
    return row;
  });
  byId("trials-table").tBodies[0].replaceChildren(...rows);
  byId("trials-empty").hidden = rows.length > 0;
}

async function cancelSweep() {
  const id = state.sweepId;
  const button = byId("cancel");
  button.disabled = true;
  try {
    await api(`/sweeps/${encodeURIComponent(id)}/cancel`, { method: "POST" });
  } catch (e) {
    byId("view-error").textContent = `Cannot cancel: ${errorText(e)}`;
  } finally {
    button.disabled = false;
  }
  await refreshSweep();
  await refreshList();
}

// ---- start -------------------------------------------------------------------------------

function stopTimers() {
  clearInterval(state.listTimer);
  state.listTimer = null;
  closeSweep();
}

async function start() {
  try {
    const session = await api("/session");
    if (session.auth_required && !session.authenticated) {
      showLogin();
      return;
    }
    state.options = await api("/options");
  } catch (e) {
    if (!(e instanceof HttpError && e.status === 401)) byId("health").textContent = errorText(e);
    return;
  }
  byId("content").hidden = false;
  buildForm(state.options);
  await refreshList();
  clearInterval(state.listTimer);
  state.listTimer = setInterval(refreshList, LIST_POLL_MS);
  routeFromHash();
}

document.addEventListener("DOMContentLoaded", () => {
  byId("login-form").addEventListener("submit", login);
  const form = byId("new-sweep-form");
  form.addEventListener("submit", submitSweep);
  form.addEventListener("input", updatePreview);
  form.addEventListener("change", () => {
    updatePreview();
    showFormErrors([]);  // the errors were about the request before this edit
  });
  byId("cancel").addEventListener("click", cancelSweep);
  window.addEventListener("hashchange", routeFromHash);
  start();
});
