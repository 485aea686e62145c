"use strict";
// A group side by side, one trajectory item by item, and its tokens coloured by log-prob.

function stepLabel(it) {
  if (it.type === "function_call") return `call ${it.name}(${it.arguments})`;
  if (it.type === "function_call_output") return `→ ${typeof it.output === "string" ? it.output : JSON.stringify(it.output)}`;
  if (it.type === "reasoning") return `think: ${(it.summary || []).map((p) => p.text).join(" ")}`;
  if (it.type === "message" || it.role) return `${it.role || "message"}: ${contentText(it.content)}`;
  return it.type || "item";
}

function advantages(rewards) {
  const ok = rewards.filter((r) => r !== null);
  const [m, sd] = meanStd(ok);
  return rewards.map((r) => (r === null ? null : sd ? (r - m) / sd : 0));
}

async function viewGroup(app, st, src, g) {
  const members = st.membersOf(g);
  if (!members.length) { app.replaceChildren(h("div", { class: "empty" }, "No such group.")); return; }
  const rows = await Promise.all(members.map((i) => src.row(i, st.n)));
  const rewards = members.map((i) => (st.ok(i) ? st.c.reward[i] : null));
  const adv = advantages(rewards);
  const labels = rows.map((r) => ((r.response && r.response.output) || []).map(stepLabel));
  let diverged = -1;
  const longest = Math.max(...labels.map((l) => l.length));
  for (let s = 0; s < longest && diverged < 0; s++) if (new Set(labels.map((l) => l[s])).size > 1) diverged = s;
  const task = st.tasks[st.c.task[members[0]]];
  const [m, sd] = meanStd(rewards.filter((r) => r !== null));
  const cols = members.map((i, j) => {
    const row = rows[j];
    const failed = !st.ok(i);
    const a = adv[j];
    return h("div", { class: "member", "data-rollout": i, onclick: () => { location.hash = `#rollout/${i}`; } },
      h("div", { class: "mh" },
        h("span", { class: "muted" }, `#${st.c.rollout_index[i]}`),
        failed ? h("span", { class: "chip bad" }, st.failures[st.c.failure[i]])
          : h("span", { class: "rw " + (rewards[j] >= 1 ? "r-good" : "r-bad"), "data-testid": "member-reward" }, fmt.r(rewards[j]))),
      h("div", { class: "adv " + (a > 0 ? "r-good" : a < 0 ? "r-bad" : "muted"), "data-testid": "member-advantage", "data-value": a ?? "" },
        a === null ? "no advantage (failed)" : `advantage ${a >= 0 ? "+" : ""}${a.toFixed(3)}`),
      h("div", { class: "answer" }, failed ? (row.failure && row.failure.message) || "failed" : finalText(row) || h("span", { class: "muted" }, "(no final message)")),
      h("div", { class: "steps" }, labels[j].map((l, s) => h("div", { class: s === diverged ? "div" : "", title: l }, `${s + 1}. ${l}`))),
      h("div", { class: "chips" },
        st.c.tool_errors[i] ? h("span", { class: "chip bad" }, `${st.c.tool_errors[i]} tool error(s)`) : null,
        st.c.retries[i] ? h("span", { class: "chip warn" }, `${st.c.retries[i]} retr${st.c.retries[i] > 1 ? "ies" : "y"}`) : null,
        h("span", { class: "chip" }, fmt.s(st.c.seconds[i]))));
  });
  app.replaceChildren(
    h("div", { class: "crumbs" }, h("a", { href: "#tasks" }, "Tasks"), ` › task ${task.key} › group`),
    h("div", { class: "prompt-box" }, task.prompt),
    h("div", { class: "head-row" },
      h("span", {}, `${members.length} members`),
      h("span", {}, `mean reward ${fmt.r(m)}`), h("span", {}, `std ${fmt.r(sd)}`),
      h("span", { "data-testid": "divergence" }, diverged < 0 ? "all members took the same steps" : `diverged at step ${diverged + 1}`)),
    h("div", { class: "members", "data-testid": "members" }, cols));
}

function pretty(text) {
  try { return [JSON.stringify(JSON.parse(text), null, 2), true]; } catch (e) { return [text, false]; }
}

function itemNode(it) {
  if (it.type === "function_call") {
    const [args, ok] = pretty(it.arguments);
    return h("div", { class: "item call" + (ok ? "" : " invalid") },
      h("div", { class: "ih" }, h("b", {}, "function call"), h("span", {}, it.name), h("span", {}, it.call_id),
        it.policy_version !== undefined ? h("span", { class: "pv" }, `policy v${it.policy_version}`) : null,
        ok ? null : h("span", { class: "flag", "data-testid": "invalid-json" }, "invalid JSON arguments (shown as written)")),
      h("pre", {}, args));
  }
  if (it.type === "function_call_output") {
    const raw = typeof it.output === "string" ? it.output : JSON.stringify(it.output);
    return h("div", { class: "item output" }, h("div", { class: "ih" }, h("b", {}, "tool output"), h("span", {}, it.call_id)),
      h("pre", {}, pretty(raw)[0]));
  }
  if (it.type === "reasoning") {
    const text = (it.summary || []).map((p) => p.text).concat((it.content || []).map((p) => p.text)).join("\n");
    return h("div", { class: "item reasoning" }, h("div", { class: "ih" }, h("b", {}, "reasoning"),
      it.policy_version !== undefined ? h("span", { class: "pv" }, `policy v${it.policy_version}`) : null),
      h("div", { class: "txt" }, text || (it.encrypted_content ? "(encrypted)" : "")));
  }
  if (it.type === "message" || it.role) {
    return h("div", { class: "item " + (it.role || "") }, h("div", { class: "ih" }, h("b", {}, it.role || "message"),
      it.policy_version !== undefined ? h("span", { class: "pv" }, `policy v${it.policy_version}`) : null,
      it.generation_token_ids ? h("span", {}, `${it.generation_token_ids.length} tokens`) : null),
      h("div", { class: "txt" }, contentText(it.content)));
  }
  return h("div", { class: "item" }, h("div", { class: "ih" }, h("b", {}, it.type || "item")), h("pre", {}, JSON.stringify(it, null, 2)));
}

function kv(obj) {
  return h("div", { class: "kv" }, Object.entries(obj).flatMap(([k, v]) =>
    [h("div", { class: "k" }, k), h("div", { class: "v" },
      typeof v === "string" ? v : Array.isArray(v) && v.every((x) => typeof x === "string") ? v.join("\n") : JSON.stringify(v))]));
}

const KNOWN = new Set(["responses_create_params", "response", "reward", "metrics", "rollout_id", "task_index",
  "rollout_index", "group_id", "agent_ref", "seed", "timing", "stats", "failure", "failure_kind", "attempts",
  "min_policy_version", "max_policy_version", "task_key", "training_view"]);

function verifierFields(row) {
  const out = Object.assign({}, row.metrics || {});
  for (const [k, v] of Object.entries(row)) if (!KNOWN.has(k) && !(k in out)) out[k] = v;
  return out;
}

async function viewRollout(app, st, src, i, tab) {
  const row = await src.row(i, st.n);
  const failed = !st.ok(i);
  const params = row.responses_create_params || {};
  const input = typeof params.input === "string" ? [{ role: "user", content: params.input }] : params.input || [];
  const output = (row.response && row.response.output) || [];
  const hasTokens = st.c.tokens[i] === 1;
  const g = st.c.group[i];
  const stats = row.stats || {};
  const header = h("div", {},
    h("div", { class: "crumbs" }, h("a", { href: "#tasks" }, "Tasks"), " › ",
      h("a", { href: `#group/${g}` }, `task ${st.tasks[st.c.task[i]].key}`), ` › rollout #${st.c.rollout_index[i]}`),
    h("div", { class: "head-row" },
      failed ? h("span", { class: "big r-bad" }, "failed")
        : h("span", { class: "big " + (st.c.reward[i] >= 1 ? "r-good" : "r-bad"), "data-testid": "rollout-reward" }, `reward ${fmt.r(st.c.reward[i])}`),
      h("span", { class: "muted" }, row.rollout_id || ""), h("span", {}, (row.agent_ref && row.agent_ref.name) || ""),
      st.c.pv_max[i] !== null ? h("span", { class: "pv" + (st.c.pv_min[i] !== st.c.pv_max[i] ? " old" : "") },
        st.c.pv_min[i] === st.c.pv_max[i] ? `policy v${st.c.pv_max[i]}` : `policy v${st.c.pv_min[i]}–v${st.c.pv_max[i]}`) : null),
    failed ? h("div", { class: "failure", "data-testid": "failure" },
      h("b", {}, st.failures[st.c.failure[i]]), h("div", {}, (row.failure && row.failure.message) || "")) : null,
    h("div", { class: "tabs" },
      h("a", { href: `#rollout/${i}`, class: tab === "tokens" ? "" : "on", "data-testid": "tab-trajectory" }, "Trajectory"),
      h("a", { href: `#rollout/${i}/tokens`, class: (tab === "tokens" ? "on" : "") + (hasTokens ? "" : " off"), "data-testid": "tab-tokens" },
        hasTokens ? "Tokens" : "Tokens (none)")));
  const aside = h("aside", {},
    h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "Verifier"), kv(verifierFields(row))),
    !row.timing ? null : h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "Timing"), kv(Object.fromEntries(Object.entries(row.timing || {})
      .map(([k, v]) => [k, typeof v === "number" ? fmt.s(v) : v])))),
    h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "Stats"), kv({ attempts: row.attempts ?? 1,
      ...Object.fromEntries(Object.entries(stats).filter(([, v]) => !Array.isArray(v) || v.length)) })));
  const main = tab === "tokens" ? tokenView(row) : h("div", { "data-testid": "items" },
    h("details", {}, h("summary", {}, `input: ${input.length} item(s)` + (params.tools ? `, ${params.tools.length} tool(s)` : "")),
      h("div", { style: "margin-top:8px" }, input.map(itemNode),
        params.tools ? h("pre", { class: "item" }, JSON.stringify(params.tools, null, 2)) : null)),
    h("h2", {}, `output: ${output.length} item(s)`),
    output.map((it) => { const n = itemNode(it); n.classList.add("out-item"); return n; }));
  app.replaceChildren(header, h("div", { class: "side" }, h("div", {}, main), aside));
}

function tokColor(lp) {
  const p = Math.exp(lp);
  return `hsl(${Math.round(120 * p)}, ${p > 0.9 ? 45 : 80}%, ${p > 0.9 ? 86 : 80}%)`;
}

const LOW = Math.log(0.1);

function tokSpan(id, lp, masked) {
  const title = lp === null || lp === undefined ? `id ${id}` : `id ${id} · logprob ${lp.toFixed(3)} · p ${Math.exp(lp).toFixed(3)}`;
  const cls = "tok" + (masked ? " mask0" : "") + (!masked && lp !== null && lp !== undefined && lp < LOW ? " low" : "");
  const node = h("span", { class: cls, title }, String(id));
  if (!masked && lp !== null && lp !== undefined) node.style.background = tokColor(lp);
  return node;
}

function tokenView(row) {
  const legend = h("div", { class: "legend" }, "log-prob:", h("span", {}, "low"), h("span", { class: "grad" }), h("span", {}, "high"),
    h("span", { class: "tok low", style: "background:" + tokColor(-4) }, "p<0.1"), h("span", { class: "tok mask0" }, "not trained (mask 0)"));
  const out = [legend];
  const tv = row.training_view;
  if (tv && (tv.prefix_violation || tv.unavailable_reason)) {
    const v = tv.prefix_violation;
    out.push(h("div", { class: "failure", "data-testid": "no-training-view" }, h("b", {}, "no training view: "),
      v ? `turn ${v.turn}'s prompt does not begin with the tokens before it (position ${v.position}: expected ${v.expected_token}, got ${v.actual_token}); trainers leave this rollout out`
        : tv.unavailable_reason));
  }
  if (tv && Array.isArray(tv.token_ids) && tv.token_ids.length) {
    const maxV = Math.max(-Infinity, ...(tv.segments || []).map((sg) => sg.policy_version ?? -Infinity));
    out.push(h("h2", {}, `training view: ${tv.token_ids.length} tokens`,
      h("span", { class: "hint" }, "the sequence a trainer sees, by segment")));
    for (const sg of tv.segments || [{ kind: "all", start: 0, end: tv.token_ids.length }]) {
      const old = sg.policy_version !== undefined && sg.policy_version !== null && sg.policy_version < maxV;
      const toks = [];
      for (let t = sg.start; t < Math.min(sg.end, sg.start + 4000); t++)
        toks.push(tokSpan(tv.token_ids[t], tv.logprobs ? tv.logprobs[t] : null, tv.loss_mask && !tv.loss_mask[t]));
      out.push(h("div", { class: "panel seg" + (old ? " offpolicy" : ""), "data-testid": "segment" },
        h("div", { class: "ih" }, h("b", {}, sg.kind), ` tokens ${sg.start}–${sg.end}`,
          sg.policy_version !== undefined ? h("span", { class: "pv" + (old ? " old" : "") }, `policy v${sg.policy_version}${old ? " (off-policy)" : ""}`) : null),
        h("div", { class: "tokens" }, toks)));
    }
    return h("div", { "data-testid": "tokens" }, out);
  }
  const items = ((row.response && row.response.output) || []).filter((it) => Array.isArray(it.generation_token_ids));
  const versions = items.map((it) => it.policy_version).filter((v) => typeof v === "number");
  const maxV = versions.length ? Math.max(...versions) : null;
  if (!items.length) out.push(h("div", { class: "empty" }, "This rollout has no token data."));
  for (const it of items) {
    const lps = it.generation_log_probs || [];
    const [m] = meanStd(lps);
    const low = lps.filter((x) => x < LOW).length;
    const old = maxV !== null && typeof it.policy_version === "number" && it.policy_version < maxV;
    out.push(h("div", { class: "panel seg" + (old ? " offpolicy" : ""), style: "margin-bottom:10px", "data-testid": "token-item" },
      h("div", { class: "head-row" }, h("b", {}, it.type === "function_call" ? `call ${it.name}` : it.type),
        h("span", { class: "muted" }, `${it.generation_token_ids.length} generated tokens`),
        it.prompt_token_count === undefined ? null : h("span", { class: "muted" },
          it.prompt_token_count ? `after ${fmt.n(it.prompt_token_count)} prompt tokens` : "same model call as above"),
        h("span", { class: "muted" }, `mean logprob ${fmt.r(m)}`), low ? h("span", { class: "chip bad" }, `${low} with p<0.1`) : null,
        typeof it.policy_version === "number" ? h("span", { class: "pv" + (old ? " old" : "") }, `policy v${it.policy_version}${old ? " (off-policy)" : ""}`) : null),
      h("div", { class: "txt muted", style: "margin-bottom:4px" }, it.type === "function_call" ? it.arguments : stepLabel(it)),
      h("div", { class: "tokens" }, it.generation_token_ids.slice(0, 4000).map((id, t) => tokSpan(id, lps[t], false)))));
  }
  return h("div", { "data-testid": "tokens" }, out);
}
