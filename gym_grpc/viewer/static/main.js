"use strict";
// Routing (#overview, #tasks, #group/G, #rollout/I[/tokens]) and, when served, following the data as it grows.

(function main() {
  const meta = JSON.parse(readText("gg-meta") || "{}");
  const src = new Source(meta);
  const st = new Store();
  const app = $("#app");
  let tasksView = null;
  let rendering = Promise.resolve();

  function render() {
    const hash = location.hash.replace(/^#/, "") || "overview";
    const [view, arg, tab] = hash.split("/");
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.dataset.view === view);
    tasksView = null;
    const run = async () => {
      if (view === "tasks") tasksView = viewTasks(app, st);
      else if (view === "group") await viewGroup(app, st, src, Number(arg));
      else if (view === "rollout") await viewRollout(app, st, src, Number(arg), tab);
      else viewOverview(app, st);
      window.scrollTo(0, 0);
      document.body.dataset.ready = hash;
    };
    rendering = rendering.then(run).catch((err) => {
      console.error(err);
      app.replaceChildren(h("div", { class: "empty" }, "Could not show this view: " + err.message));
    });
  }

  async function poll() {
    try {
      const grew = st.append(await src.summary(st.n));
      $("#live-text").textContent = `live · ${st.n.toLocaleString("en-US")} rollouts`;
      const view = (location.hash.replace(/^#/, "") || "overview").split("/")[0];
      if (grew && view === "overview") render();
      if (grew && view === "tasks" && tasksView) tasksView.refresh();
    } catch (err) {
      $("#live-text").textContent = "live · server gone";
      return;
    }
    setTimeout(poll, 1000);
  }

  (async () => {
    st.append(await src.summary(0));
    window.addEventListener("hashchange", render);
    render();
    if (src.live) {
      $("#live").hidden = false;
      $("#live-text").textContent = `live · ${st.n.toLocaleString("en-US")} rollouts`;
      setTimeout(poll, 1000);
    }
  })();
})();
