"use strict";
// Helpers, the data source (embedded chunks or the --serve API), the rollout store and its aggregations.
const $ = (sel, root) => (root || document).querySelector(sel);

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const fmt = {
  n: (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en-US")),
  r: (x, d = 3) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(d)),
  pct: (x) => (x === null || x === undefined || Number.isNaN(x) ? "–" : (100 * x).toFixed(1) + "%"),
  s: (x) => (x === null || x === undefined ? "–" : x < 1 ? (1000 * x).toFixed(0) + " ms" : x.toFixed(2) + " s"),
};

function readText(id) {
  const node = document.getElementById(id);
  return node ? node.textContent : "";
}

async function gunzipBase64(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

class Source {
  // Where summaries and rows come from: the page itself (static) or the server that serves it (live).
  constructor(meta) {
    this.meta = meta;
    this.live = meta.mode === "serve";
    this.chunkRows = meta.chunk_rows || 256;
    this.cache = new Map();
    this.lines = this.live ? [] : readText("gg-chunks").split("\n");
  }
  async chunk(k, n) {
    const complete = (k + 1) * this.chunkRows <= n;
    if (this.cache.has(k)) return this.cache.get(k);
    const rows = this.live ? await (await fetch(`api/chunk/${k}`)).json() : await gunzipBase64(this.lines[k]);
    if (complete || !this.live) {
      this.cache.set(k, rows);
      if (this.cache.size > 12) this.cache.delete(this.cache.keys().next().value);
    }
    return rows;
  }
  async row(i, n) {
    const rows = await this.chunk(Math.floor(i / this.chunkRows), n);
    return rows[i % this.chunkRows];
  }
  async summary(start) {
    if (!this.live) return JSON.parse(readText("gg-summary"));
    const res = await fetch(`api/summary?start=${start}`);
    return res.json();
  }
}

class Store {
  constructor() {
    this.n = 0;
    this.c = {};
    this.tasks = []; this.groups = []; this.agents = []; this.failures = []; this.answers = [];
    this.version = 0;
    this._agg = null;
  }
  append(s) {
    if (s.start !== this.n) return false;
    for (const [k, v] of Object.entries(s.columns)) this.c[k] = this.n ? this.c[k].concat(v) : v;
    Object.assign(this, { tasks: s.tasks, groups: s.groups, agents: s.agents, failures: s.failures, answers: s.answers });
    const grew = s.n !== this.n;
    this.n = s.n;
    if (grew) { this.version++; this._agg = null; }
    return grew;
  }
  ok(i) { return this.c.failure[i] === -1; }
  membersOf(g) {
    const out = [];
    for (let i = 0; i < this.n; i++) if (this.c.group[i] === g) out.push(i);
    return out.sort((a, b) => this.c.rollout_index[a] - this.c.rollout_index[b]);
  }
  agg() {
    if (!this._agg) this._agg = aggregate(this);
    return this._agg;
  }
}

function meanStd(xs) {
  if (!xs.length) return [null, null];
  let s = 0;
  for (const x of xs) s += x;
  const m = s / xs.length;
  let v = 0;
  for (const x of xs) v += (x - m) * (x - m);
  return [m, Math.sqrt(v / xs.length)];
}

function passStats(byTask, answersByTask) {
  // The collector's definitions (gym_grpc/collect/metrics.py): k = the largest number of scored rollouts of a task.
  const tasks = [...byTask.values()];
  const k = tasks.reduce((m, r) => Math.max(m, r.length), 1);
  if (k < 2) return { k };
  const passK = meanStd(tasks.map((r) => (Math.max(...r) >= 1 ? 1 : 0)))[0];
  const pass1 = meanStd(tasks.map((r) => r.filter((x) => x >= 1).length / r.length))[0];
  let majority = null;
  if (answersByTask.size) {
    majority = meanStd([...answersByTask.values()].map((pairs) => {
      const votes = new Map();
      for (const [a] of pairs) votes.set(a, (votes.get(a) || 0) + 1);
      const top = Math.max(...votes.values());
      const winner = pairs.find(([a]) => votes.get(a) === top)[0];
      return pairs.some(([a, r]) => a === winner && r >= 1) ? 1 : 0;
    }))[0];
  }
  return { k, passK, pass1, majority };
}

function aggregate(st) {
  const c = st.c;
  const rewards = [];
  const byKind = new Map();
  let retried = 0, toolErrors = 0, failed = 0;
  const perAgent = st.agents.map((name) => ({ name, n: 0, failed: 0, rewards: [], byTask: new Map(), answers: new Map() }));
  const tasks = st.tasks.map((t, i) => ({ i, index: t.index, key: t.key, prompt: t.prompt, n: 0, failed: 0, toolErr: 0, rewards: [],
    groups: new Map() }));
  for (let i = 0; i < st.n; i++) {
    const a = perAgent[c.agent[i]];
    const t = tasks[c.task[i]];
    a.n++; t.n++;
    t.groups.set(c.group[i], (t.groups.get(c.group[i]) || 0) + 1);
    if (c.retries[i] > 0) retried++;
    if (c.tool_errors[i] > 0) { toolErrors++; t.toolErr++; }
    if (c.failure[i] !== -1) {
      failed++; a.failed++; t.failed++;
      const kind = st.failures[c.failure[i]].split(":")[0];
      byKind.set(kind, (byKind.get(kind) || 0) + 1);
      continue;
    }
    const r = c.reward[i];
    if (r === null) continue;
    rewards.push(r); a.rewards.push(r); t.rewards.push(r);
    const key = c.task[i];
    if (!a.byTask.has(key)) a.byTask.set(key, []);
    a.byTask.get(key).push(r);
    if (c.answer[i] >= 0) {
      if (!a.answers.has(key)) a.answers.set(key, []);
      a.answers.get(key).push([st.answers[c.answer[i]], r]);
    }
  }
  for (const a of perAgent) { [a.mean, a.std] = meanStd(a.rewards); Object.assign(a, passStats(a.byTask, a.answers)); }
  for (const t of tasks) {
    [t.mean] = meanStd(t.rewards);
    t.pass = t.rewards.length ? t.rewards.filter((x) => x >= 1).length / t.rewards.length : null;
    t.size = Math.max(0, ...t.groups.values());
    t.group = t.groups.size ? [...t.groups.keys()][0] : null;
  }
  // Over all agents: a task of each agent counts once.
  const all = new Map(), allAnswers = new Map();
  perAgent.forEach((a, ai) => {
    for (const [k, v] of a.byTask) all.set(ai + "/" + k, v);
    for (const [k, v] of a.answers) allAnswers.set(ai + "/" + k, v);
  });
  const [mean, std] = meanStd(rewards);
  return { n: st.n, succeeded: st.n - failed, failed, byKind, retried, toolErrors, rewards, mean, std, perAgent, tasks,
    ...passStats(all, allAnswers) };
}

function finalText(row) {
  const out = (row.response && row.response.output) || [];
  for (let i = out.length - 1; i >= 0; i--) {
    const it = out[i];
    if (it.type === "message" || (it.role && it.role === "assistant")) return contentText(it.content);
  }
  return "";
}

function contentText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => (p && typeof p.text === "string" ? p.text : "")).join("");
  return "";
}
