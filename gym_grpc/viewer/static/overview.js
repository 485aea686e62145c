"use strict";
// The overview: counts, reward statistics and charts, pass@k where groups exist, the per-agent split.

function card(label, value, opts = {}) {
  return h("div", { class: "card " + (opts.cls || ""), title: opts.title },
    h("div", { class: "k" }, label),
    h("div", { class: "v", "data-testid": opts.id, "data-value": opts.raw ?? value }, value, opts.small ? h("small", {}, " " + opts.small) : null));
}

function viewOverview(app, st) {
  const a = st.agg();
  const cards = h("div", { class: "cards" },
    card("rollouts", fmt.n(a.n), { id: "stat-total", raw: a.n }),
    card("succeeded", fmt.n(a.succeeded), { id: "stat-succeeded", raw: a.succeeded, cls: "good" }),
    card("failed", fmt.n(a.failed), { id: "stat-failed", raw: a.failed, cls: a.failed ? "bad" : "" }),
    card("retried", fmt.n(a.retried), { id: "stat-retried", raw: a.retried, cls: a.retried ? "warn" : "",
      title: "rollouts with a model retry or more than one attempt" }),
    card("with tool errors", fmt.n(a.toolErrors), { id: "stat-tool-errors", raw: a.toolErrors, cls: a.toolErrors ? "warn" : "" }),
    card("mean reward", fmt.r(a.mean), { id: "stat-mean", raw: a.mean ?? "", small: a.std === null ? "" : "± " + fmt.r(a.std) }),
    card("reward std", fmt.r(a.std), { id: "stat-std", raw: a.std ?? "" }),
    a.k > 1 ? card(`pass@${a.k}`, fmt.pct(a.passK), { id: "stat-pass-k", raw: a.passK }) : null,
    a.k > 1 ? card("pass@1", fmt.pct(a.pass1), { id: "stat-pass-1", raw: a.pass1 }) : null,
    a.k > 1 && a.majority !== null && a.majority !== undefined
      ? card(`majority@${a.k}`, fmt.pct(a.majority), { id: "stat-majority", raw: a.majority }) : null,
  );
  const kinds = h("div", { class: "chips" },
    [...a.byKind.entries()].map(([k, v]) => h("span", { class: "chip bad", "data-testid": "failed-" + k, "data-value": v }, `failed (${k}): ${fmt.n(v)}`)),
    st.failures.map((label, i) => {
      let count = 0;
      for (let j = 0; j < st.n; j++) if (st.c.failure[j] === i) count++;
      return h("span", { class: "chip", title: label }, `${label} × ${fmt.n(count)}`);
    }));
  const charts = h("div", { class: "grid2" },
    h("div", { class: "panel chart" }, h("h2", { style: "margin-top:0" }, "Reward histogram", h("span", { class: "hint" }, "succeeded rollouts")), histogram(a.rewards)),
    h("div", { class: "panel chart" }, h("h2", { style: "margin-top:0" }, "Reward over time",
      h("span", { class: "hint" }, "mean per bucket, completion order; red: share failed")), overTime(st)));
  const agents = h("table", { class: "plain", "data-testid": "agents" },
    h("tr", {}, ["agent", "rollouts", "failed", "mean reward", "std", "pass@k", "pass@1"].map((t) => h("th", {}, t))),
    a.perAgent.map((p) => h("tr", {},
      h("td", {}, p.name || "(none)"), h("td", {}, fmt.n(p.n)), h("td", {}, fmt.n(p.failed)),
      h("td", {}, fmt.r(p.mean)), h("td", {}, fmt.r(p.std)),
      h("td", {}, p.k > 1 ? `${fmt.pct(p.passK)} (k=${p.k})` : "–"), h("td", {}, p.k > 1 ? fmt.pct(p.pass1) : "–"))));
  const worst = a.tasks.filter((t) => t.rewards.length || t.failed).sort((x, y) => (x.mean ?? -1) - (y.mean ?? -1) || y.failed - x.failed).slice(0, 8);
  const hardest = h("table", { class: "plain" },
    h("tr", {}, ["task", "prompt", "mean reward", "failed"].map((t) => h("th", {}, t))),
    worst.map((t) => h("tr", {},
      h("td", {}, h("a", { href: t.group === null ? "#tasks" : `#group/${t.group}` }, t.key)),
      h("td", { class: "muted", style: "max-width:560px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap" }, t.prompt),
      h("td", {}, fmt.r(t.mean)), h("td", {}, fmt.n(t.failed)))));
  app.replaceChildren(
    cards, a.byKind.size ? kinds : null, h("h2", {}, "Rewards"), charts,
    h("div", { class: "grid2" },
      h("div", {}, h("h2", {}, "Per agent"), h("div", { class: "panel" }, agents)),
      h("div", {}, h("h2", {}, "Lowest-reward tasks", h("a", { class: "hint", href: "#tasks" }, "all tasks →")), h("div", { class: "panel" }, hardest))));
}
