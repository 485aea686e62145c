"use strict";
// The tasks table: one row per task, sortable and filterable, virtualised (only the visible rows are in the DOM).

const ROW_H = 34;
const COLUMNS = [
  ["key", "task"], ["prompt", "prompt"], ["n", "rollouts"], ["size", "group"], ["pass", "pass rate"],
  ["mean", "mean reward"], ["failed", "failed"], ["toolErr", "tool errors"],
];
const taskState = { q: "", lo: "", hi: "", failedOnly: false, toolOnly: false, sort: "key", dir: 1 };

function filteredTasks(st) {
  const a = st.agg();
  const q = taskState.q.trim().toLowerCase();
  const lo = taskState.lo === "" ? -Infinity : Number(taskState.lo);
  const hi = taskState.hi === "" ? Infinity : Number(taskState.hi);
  const ranged = taskState.lo !== "" || taskState.hi !== "";
  const rows = a.tasks.filter((t) => {
    if (taskState.failedOnly && !t.failed) return false;
    if (taskState.toolOnly && !t.toolErr) return false;
    if (ranged && (t.mean === null || t.mean < lo || t.mean > hi)) return false;
    if (q && !t.prompt.toLowerCase().includes(q) && !String(t.key).toLowerCase().includes(q)) return false;
    return true;
  });
  const k = taskState.sort, d = taskState.dir;
  const num = (v) => (v === null || v === undefined ? -Infinity : v);
  rows.sort((x, y) => {
    if (k === "key" || k === "prompt") {
      const nx = Number(x[k]), ny = Number(y[k]);
      if (k === "key" && !Number.isNaN(nx) && !Number.isNaN(ny)) return d * (nx - ny);
      return d * String(x[k]).localeCompare(String(y[k]));
    }
    return d * (num(x[k]) - num(y[k])) || x.index - y.index || x.i - y.i;
  });
  return rows;
}

function viewTasks(app, st) {
  const search = h("input", { type: "search", placeholder: "Search prompts…", value: taskState.q, "data-testid": "search" });
  const lo = h("input", { type: "number", step: "0.1", placeholder: "min", value: taskState.lo, "data-testid": "reward-min" });
  const hi = h("input", { type: "number", step: "0.1", placeholder: "max", value: taskState.hi, "data-testid": "reward-max" });
  const failedOnly = h("input", { type: "checkbox", "data-testid": "failed-only" });
  const toolOnly = h("input", { type: "checkbox", "data-testid": "tool-errors-only" });
  failedOnly.checked = taskState.failedOnly; toolOnly.checked = taskState.toolOnly;
  const count = h("span", { class: "count", "data-testid": "task-count" });
  const head = h("div", { class: "head" });
  const body = h("div", { class: "body", "data-testid": "task-rows" });
  const spacer = h("div", {});
  body.append(spacer);
  let rows = [];
  const paint = () => {
    const first = Math.max(0, Math.floor(body.scrollTop / ROW_H) - 5);
    const last = Math.min(rows.length, first + Math.ceil((body.clientHeight || 600) / ROW_H) + 10);
    const nodes = [];
    for (let r = first; r < last; r++) {
      const t = rows[r];
      const passCell = t.pass === null ? h("div", { class: "muted" }, "–") : h("div", { class: "bar-cell" },
        h("span", { class: "minibar" }, h("span", { style: `width:${(100 * t.pass).toFixed(0)}%` })), fmt.pct(t.pass));
      nodes.push(h("div", { class: "row trow", style: `top:${r * ROW_H}px`, "data-task": t.key,
        onclick: () => { location.hash = t.group === null ? "#tasks" : `#group/${t.group}`; } },
        h("div", { style: "line-height:34px" }, t.key), h("div", { class: "prompt", style: "line-height:34px", title: t.prompt }, t.prompt),
        h("div", {}, fmt.n(t.n)), h("div", {}, t.size), passCell,
        h("div", { class: t.mean === null ? "muted" : t.mean >= 1 ? "r-good" : t.mean <= 0 ? "r-bad" : "" }, fmt.r(t.mean)),
        h("div", { class: t.failed ? "r-bad" : "muted" }, t.failed), h("div", { class: t.toolErr ? "r-bad" : "muted" }, t.toolErr)));
    }
    spacer.replaceChildren(...nodes);
    spacer.style.height = rows.length * ROW_H + "px";
  };
  const refresh = () => {
    rows = filteredTasks(st);
    count.textContent = `${rows.length.toLocaleString("en-US")} of ${st.tasks.length.toLocaleString("en-US")} tasks`;
    count.dataset.value = rows.length;
    head.replaceChildren(...COLUMNS.map(([k, label]) => h("div", {
      class: taskState.sort === k ? "sorted" : "", "data-sort": k,
      onclick: () => { taskState.dir = taskState.sort === k ? -taskState.dir : 1; taskState.sort = k; refresh(); } },
      label + (taskState.sort === k ? (taskState.dir > 0 ? " ▲" : " ▼") : ""))));
    paint();
  };
  let timer = 0;
  const debounced = () => { clearTimeout(timer); timer = setTimeout(refresh, 60); };
  search.addEventListener("input", () => { taskState.q = search.value; body.scrollTop = 0; debounced(); });
  lo.addEventListener("input", () => { taskState.lo = lo.value; debounced(); });
  hi.addEventListener("input", () => { taskState.hi = hi.value; debounced(); });
  failedOnly.addEventListener("change", () => { taskState.failedOnly = failedOnly.checked; refresh(); });
  toolOnly.addEventListener("change", () => { taskState.toolOnly = toolOnly.checked; refresh(); });
  body.addEventListener("scroll", () => requestAnimationFrame(paint), { passive: true });
  app.replaceChildren(
    h("div", { class: "filters" }, search,
      h("label", {}, "mean reward", lo, "–", hi),
      h("label", {}, failedOnly, "with failures"),
      h("label", {}, toolOnly, "with tool errors"), count),
    h("div", { class: "vt" }, head, body));
  refresh();
  return { refresh };
}
