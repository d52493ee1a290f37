// The Ember web UI: one page, drawn from the scheduler's JSON routes
// (/api/ember/ui/...). No libraries, nothing fetched from elsewhere.
"use strict";

const API = "/api/ember/ui";
const FAST_REFRESH_MS = 2000;
const SLOW_REFRESH_MS = 10000;

let timer = null;
let lastJson = null;

// ---- formatting ----------------------------------------------------------

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function num(n) {
  return Number(n || 0).toLocaleString("en-US");
}

function bytes(n) {
  n = Number(n || 0);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function duration(ms) {
  if (ms == null) return "";
  ms = Math.max(0, Math.round(ms));
  if (ms < 1000) return ms + " ms";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + Math.round(s - m * 60) + " s";
  return Math.floor(m / 60) + " h " + (m % 60) + " min";
}

function when(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { hour12: false });
}

function jobDuration(job) {
  const start = job.started_at_ms || job.queued_at_ms;
  const end = job.ended_at_ms || Date.now();
  return start ? end - start : null;
}

function statusSpan(status, id) {
  const s = String(status || "").toLowerCase();
  return `<span class="status status-${esc(s)}"${id ? ` id="${id}"` : ""}>${esc(s)}</span>`;
}

function isActive(status) {
  return status === "running" || status === "queued";
}

// ---- fetching ------------------------------------------------------------

class Unauthorized extends Error {}

async function getJson(path) {
  const response = await fetch(API + path, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) throw new Error((await response.text()).trim() || response.statusText);
  return response.json();
}

async function cancelJob(jobId, button) {
  if (!confirm(`Cancel job ${jobId}?`)) return;
  button.disabled = true;
  const response = await fetch(`${API}/job/${encodeURIComponent(jobId)}/cancel`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "x-requested-by": "ember-ui" },
  });
  if (!response.ok && response.status !== 409) {
    alert(`Could not cancel job ${jobId}: ${(await response.text()).trim()}`);
    button.disabled = false;
  }
  refresh(true);
}

// ---- pages ---------------------------------------------------------------

function jobsPage(jobs) {
  const rows = jobs.map((job) => {
    const pct = job.stages_total ? Math.round((100 * job.stages_done) / job.stages_total) : 0;
    const cancel = isActive(job.status)
      ? `<button class="cancel" data-job-id="${esc(job.job_id)}" data-focus-key="cancel-${esc(job.job_id)}"
           aria-label="Cancel job ${esc(job.job_id)}">Cancel</button>`
      : "";
    return `<tr data-job-id="${esc(job.job_id)}">
      <td><a class="job-link" href="#/job/${encodeURIComponent(job.job_id)}"
             data-focus-key="job-${esc(job.job_id)}"><code>${esc(job.job_id)}</code></a>
          ${job.from_history ? '<span class="badge" title="From the job history">history</span>' : ""}</td>
      <td>${statusSpan(job.status)}</td>
      <td>${job.sql ? `<code class="sql" title="${esc(job.sql)}">${esc(job.sql)}</code>`
             : `<span class="muted" title="Submitted without SQL text (the Dataset API)">${esc(job.name)}</span>`}</td>
      <td>${esc(when(job.queued_at_ms))}</td>
      <td class="num">${esc(duration(jobDuration(job)))}</td>
      <td><span class="bar" role="img" aria-label="${pct}% of stages done"><span data-pct="${pct}"></span></span>
          ${job.stages_done}/${job.stages_total}</td>
      <td class="num">${num(job.output_rows)}</td>
      <td>${cancel}</td>
    </tr>`;
  });
  return `<h1>Jobs</h1>
    ${jobs.length === 0 ? '<p class="muted">No jobs yet. Run a query on this cluster and it appears here.</p>' : `
    <table id="jobs">
      <thead><tr><th>Job</th><th>Status</th><th>SQL</th><th>Submitted</th><th class="num">Duration</th>
        <th>Stages</th><th class="num">Rows</th><th><span class="muted">Action</span></th></tr></thead>
      <tbody>${rows.join("")}</tbody>
    </table>`}`;
}

// Lays the stage DAG out in columns: a stage sits one column right of the
// furthest stage it reads.
function dagSvg(stages, slowestId) {
  const byId = new Map(stages.map((s) => [s.stage_id, s]));
  const level = new Map();
  const levelOf = (id, seen = new Set()) => {
    if (level.has(id)) return level.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const stage = byId.get(id);
    const inputs = stage ? stage.inputs.filter((i) => byId.has(i)) : [];
    const l = inputs.length ? 1 + Math.max(...inputs.map((i) => levelOf(i, seen))) : 0;
    level.set(id, l);
    return l;
  };
  stages.forEach((s) => levelOf(s.stage_id));
  const columns = [];
  for (const s of stages) (columns[level.get(s.stage_id)] ||= []).push(s);
  const W = 190, H = 64, GX = 70, GY = 18, PAD = 14;
  const pos = new Map();
  columns.forEach((col, x) => col.forEach((s, y) =>
    pos.set(s.stage_id, { x: PAD + x * (W + GX), y: PAD + y * (H + GY) })));
  const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GX;
  const height = PAD * 2 + Math.max(...columns.map((c) => c.length)) * (H + GY) - GY;
  const edges = [];
  for (const s of stages) {
    for (const input of s.inputs) {
      const a = pos.get(input), b = pos.get(s.stage_id);
      if (!a || !b) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x - 4, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      edges.push(`<path class="edge" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"/>`);
    }
  }
  const nodes = stages.map((s) => {
    const p = pos.get(s.stage_id);
    const total = s.tasks_total;
    const cls = `node status-${esc(s.status.toLowerCase())}${s.stage_id === slowestId ? " slowest" : ""}`;
    return `<a href="#stage-${s.stage_id}" class="${cls}" data-stage-id="${s.stage_id}" data-stage-link="${s.stage_id}"
        data-focus-key="dag-${s.stage_id}" aria-label="Stage ${s.stage_id}, ${esc(s.status)}">
      <g transform="translate(${p.x},${p.y})">
        <rect width="${W}" height="${H}"></rect>
        <text x="10" y="18" font-weight="600">Stage ${s.stage_id}${s.stage_id === slowestId ? " · slowest" : ""}</text>
        <text x="10" y="35">${esc(s.status.toLowerCase())} · ${s.tasks_done}/${total} tasks</text>
        <text x="10" y="52">${num(s.output_rows)} rows · ${esc(duration(s.wall_ms))}</text>
      </g></a>`;
  });
  return `<svg id="dag" width="${width}" height="${height}" role="group" aria-label="Stage graph">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
      <path d="M0,0 L10,5 L0,10 z" fill="#9aa3b2"/></marker></defs>
    ${edges.join("")}${nodes.join("")}</svg>`;
}

function slowestStage(stages) {
  let slowest = null;
  for (const s of stages) if (!slowest || s.wall_ms > slowest.wall_ms) slowest = s;
  return slowest && slowest.wall_ms > 0 ? slowest : null;
}

function skewCell(s) {
  if (!s.task_ms_max) return "";
  const ratio = s.task_ms_median ? s.task_ms_max / s.task_ms_median : 1;
  const text = `${duration(s.task_ms_max)} / ${duration(s.task_ms_median)}`;
  const title = `slowest task ${duration(s.task_ms_max)}${s.slowest_executor ? " on " + s.slowest_executor : ""}, median ${duration(s.task_ms_median)}`;
  return ratio >= 2 && s.task_ms_max >= 100
    ? `<span class="skew" title="${esc(title)}">${esc(text)} (${ratio.toFixed(1)}x)</span>`
    : `<span title="${esc(title)}">${esc(text)}</span>`;
}

function jobPage(view) {
  const job = view.summary;
  const stages = view.stages;
  const slowest = slowestStage(stages);
  const cancel = isActive(job.status)
    ? `<button class="cancel" data-job-id="${esc(job.job_id)}" data-focus-key="cancel-${esc(job.job_id)}">Cancel job</button>`
    : "";
  const rows = stages.map((s) => `<tr id="stage-${s.stage_id}" data-stage-id="${s.stage_id}" tabindex="-1">
      <td>${s.stage_id}${s.attempt ? ` <span class="badge" title="Attempt">#${s.attempt + 1}</span>` : ""}</td>
      <td>${statusSpan(s.status)}</td>
      <td>${s.inputs.length ? s.inputs.join(", ") : '<span class="muted">scan</span>'}</td>
      <td class="num" title="${s.partitions} partitions">${s.tasks_done}/${s.tasks_total}${s.tasks_running ? ` <span class="status-running">(${s.tasks_running} running)</span>` : ""}${s.tasks_failed ? ` <span class="status-failed">(${s.tasks_failed} failed)</span>` : ""}</td>
      <td class="num">${esc(duration(s.wall_ms))}</td>
      <td class="num">${esc(duration(s.compute_ms))}</td>
      <td class="num">${num(s.input_rows)}</td>
      <td class="num">${bytes(s.input_bytes)}</td>
      <td class="num">${num(s.output_rows)}</td>
      <td class="num">${bytes(s.output_bytes)}</td>
      <td class="num">${s.spilled_bytes ? bytes(s.spilled_bytes) + ` (${num(s.spill_files)} files)` : "0"}</td>
      <td class="num">${skewCell(s)}</td>
    </tr>`);
  const plans = stages.map((s) => `<details data-focus-key="plan-${s.stage_id}">
      <summary>Stage ${s.stage_id}: plan with metrics</summary>
      ${s.error ? `<div class="error">${esc(s.error)}</div>` : ""}
      <pre>${esc(s.plan)}</pre></details>`);
  return `<h1 id="job-title">Job <code>${esc(job.job_id)}</code> ${statusSpan(job.status, "job-status")}
      ${job.from_history ? '<span class="badge">history</span>' : ""} ${cancel}</h1>
    ${job.error ? `<div class="error" id="job-error" role="alert">${esc(job.error)}</div>` : ""}
    <dl class="facts">
      <dt>Name</dt><dd>${esc(job.name)}</dd>
      <dt>SQL</dt><dd>${job.sql ? `<pre id="job-sql">${esc(job.sql)}</pre>` : '<span class="muted">not sent by the client</span>'}</dd>
      <dt>Submitted</dt><dd>${esc(when(job.queued_at_ms))}</dd>
      <dt>Duration</dt><dd>${esc(duration(jobDuration(job)))}${isActive(job.status) ? " so far" : ""}</dd>
      <dt>Stages</dt><dd>${job.stages_done} of ${job.stages_total} done</dd>
      <dt>Rows</dt><dd id="job-rows">${num(job.output_rows)}</dd>
      <dt>Slowest stage</dt><dd id="slowest-stage">${slowest ? `<a href="#stage-${slowest.stage_id}" data-stage-link="${slowest.stage_id}">Stage ${slowest.stage_id}</a>, ${esc(duration(slowest.wall_ms))}` : '<span class="muted">none yet</span>'}</dd>
    </dl>
    <h2>Stages</h2>
    <div class="dag">${stages.length ? dagSvg(stages, slowest && slowest.stage_id) : '<p class="muted">Not planned yet.</p>'}</div>
    <table id="stages">
      <thead><tr><th>Stage</th><th>Status</th><th>Reads</th><th class="num">Tasks</th><th class="num">Time</th>
        <th class="num">CPU</th><th class="num">Rows in</th><th class="num">Shuffle in</th><th class="num">Rows out</th>
        <th class="num">Shuffle out</th><th class="num">Spill</th><th class="num" title="Slowest task / median task">Slowest / median task</th></tr></thead>
      <tbody>${rows.join("")}</tbody>
    </table>
    <h2>Plans</h2>${plans.join("")}`;
}

function executorsPage(executors) {
  const rss = executors.some((e) => e.rss_bytes != null);
  const rows = executors.map((e) => {
    const u = e.usage;
    const pool = u ? `${bytes(u.memory_pool_used_bytes)} / ${u.memory_pool_bytes ? bytes(u.memory_pool_bytes) : "unbounded"}` : "";
    const disk = u ? `${bytes(u.shuffle_disk_bytes)} / ${bytes(u.spill_disk_bytes)} / ${bytes(u.cache_disk_bytes)}` : "";
    const unknown = e.usage_error ? ` <span class="muted" title="${esc(e.usage_error)}">(not reachable)</span>` : "";
    return `<tr data-executor-id="${esc(e.executor_id)}">
      <td><code title="${esc(e.executor_id)}">${esc(e.executor_id.slice(0, 8))}</code></td><td>${esc(e.address)}</td>
      <td>${statusSpan(e.state)}${e.lost_at_ms ? ` <span class="muted">at ${esc(when(e.lost_at_ms))}</span>` : ""}${unknown}</td>
      <td class="num">${e.slots_in_use}/${e.slots}</td>
      <td class="num" data-field="pool">${pool}</td>
      ${rss ? `<td class="num">${e.rss_bytes != null ? bytes(e.rss_bytes) : ""}</td>` : ""}
      <td class="num" data-field="disk">${disk}</td>
      <td class="num">${u ? bytes(u.cache_memory_bytes) : ""}</td>
      <td class="num" data-field="tasks">${u ? `${num(u.tasks_succeeded)} / ${num(u.tasks_failed)}` : ""}</td>
      <td class="num">${u ? `${bytes(u.shuffle_bytes_written)} / ${bytes(u.spilled_bytes)}` : ""}</td>
      <td class="num">${e.heartbeat_age_secs != null ? e.heartbeat_age_secs + " s ago" : ""}</td>
    </tr>`;
  });
  return `<h1>Executors</h1>
    <table id="executors"><thead><tr><th>Executor</th><th>Address</th><th>State</th>
      <th class="num">Slots used</th><th class="num">Pool used / size</th>${rss ? '<th class="num">Memory (RSS)</th>' : ""}
      <th class="num" title="Files on its disk now">Disk: shuffle / spill / cache</th><th class="num">Cache in memory</th>
      <th class="num">Tasks ok / failed</th><th class="num" title="Shuffle bytes written and bytes spilled since it started">Written / spilled</th>
      <th class="num">Heartbeat</th></tr></thead>
      <tbody>${rows.join("") || '<tr><td colspan="11" class="muted">No executors registered.</td></tr>'}</tbody></table>`;
}

function storagePage(caches) {
  const rows = caches.map((c) => {
    const where = new Map();
    for (const b of c.blocks) {
      const key = `${b.endpoint} (${b.medium})`;
      where.set(key, (where.get(key) || 0) + 1);
    }
    const places = [...where].map(([k, n]) => `${esc(k)}: ${n}`).join("<br>");
    return `<tr data-cache-id="${esc(c.cache_id)}"><td><code>${esc(c.cache_id)}</code></td>
      <td class="num">${c.complete_partitions ?? '<span class="muted">incomplete</span>'}</td>
      <td class="num">${num(c.rows)}</td><td class="num">${bytes(c.bytes)}</td><td>${places}</td></tr>`;
  });
  return `<h1>Storage</h1>
    <p class="muted">Datasets cached with <code>cache()</code> or <code>persist()</code> that this scheduler's jobs used.</p>
    <table id="storage"><thead><tr><th>Cache</th><th class="num">Partitions</th><th class="num">Rows</th>
      <th class="num">Size</th><th>Held by (partitions)</th></tr></thead>
      <tbody>${rows.join("") || '<tr><td colspan="5" class="muted">Nothing cached.</td></tr>'}</tbody></table>`;
}

function loginPage(message) {
  return `<h1>Sign in</h1>
    <form class="login" id="login">
      <p>This cluster needs its token (the contents of the scheduler's <code>--token-file</code>).</p>
      ${message ? `<div class="error" role="alert">${esc(message)}</div>` : ""}
      <label for="token">Token</label>
      <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
      <button type="submit">Sign in</button>
    </form>`;
}

// ---- routing and refreshing ----------------------------------------------

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, ...rest] = hash.split("/");
  if (page === "job" && rest.length) return { page: "job", id: decodeURIComponent(rest.join("/")) };
  if (page === "executors" || page === "storage") return { page };
  return { page: "jobs" };
}

function render(html) {
  const main = document.getElementById("main");
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.focusKey : null;
  const open = [...main.querySelectorAll("details[open]")].map((d) => d.dataset.focusKey);
  main.innerHTML = html;
  for (const key of open) {
    const d = main.querySelector(`details[data-focus-key="${CSS.escape(key)}"]`);
    if (d) d.open = true;
  }
  if (focused) {
    const again = main.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  for (const button of main.querySelectorAll("button.cancel")) {
    button.addEventListener("click", () => cancelJob(button.dataset.jobId, button));
  }
  // Bar widths are set here: the page's content security policy refuses
  // inline style attributes.
  for (const bar of main.querySelectorAll("[data-pct]")) {
    bar.style.width = `${Number(bar.dataset.pct) || 0}%`;
  }
  // Stage links scroll to the stage's row; the page's own route stays.
  for (const link of main.querySelectorAll("[data-stage-link]")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      const row = document.getElementById("stage-" + link.dataset.stageLink);
      if (row) { row.scrollIntoView({ block: "center" }); row.focus(); }
    });
  }
  const login = document.getElementById("login");
  if (login) login.addEventListener("submit", signIn);
}

async function signIn(event) {
  event.preventDefault();
  const token = document.getElementById("token").value;
  const response = await fetch("/ui/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token }),
  });
  if (response.ok) {
    lastJson = null;
    refresh(true);
  } else {
    render(loginPage((await response.text()).trim()));
  }
}

async function load(where) {
  switch (where.page) {
    case "job": {
      const view = await getJson(`/job/${encodeURIComponent(where.id)}`);
      return { data: view, html: () => jobPage(view), active: isActive(view.summary.status) };
    }
    case "executors": {
      const executors = await getJson("/executors");
      return { data: executors, html: () => executorsPage(executors), active: false };
    }
    case "storage": {
      const caches = await getJson("/storage");
      return { data: caches, html: () => storagePage(caches), active: false };
    }
    default: {
      const jobs = await getJson("/jobs");
      return { data: jobs, html: () => jobsPage(jobs), active: jobs.some((j) => isActive(j.status)) };
    }
  }
}

async function refresh(force) {
  clearTimeout(timer);
  const where = route();
  for (const link of document.querySelectorAll("header nav a")) {
    const current = link.dataset.page === (where.page === "job" ? "jobs" : where.page);
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  let active = false;
  try {
    const result = await load(where);
    active = result.active;
    const json = JSON.stringify(result.data);
    if (force || json !== lastJson) {
      lastJson = json;
      render(result.html());
    }
    document.getElementById("refreshed").textContent =
      "Updated " + new Date().toLocaleTimeString(undefined, { hour12: false });
  } catch (error) {
    if (error instanceof Unauthorized) {
      if (!document.getElementById("login")) render(loginPage(""));
      return;
    }
    lastJson = null;
    render(`<div class="error" role="alert">${esc(error.message)}</div>`);
  }
  if (!document.hidden) timer = setTimeout(() => refresh(false), active ? FAST_REFRESH_MS : SLOW_REFRESH_MS);
}

window.addEventListener("hashchange", () => { lastJson = null; refresh(true); });
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(false); });
document.addEventListener("DOMContentLoaded", () => refresh(true));
