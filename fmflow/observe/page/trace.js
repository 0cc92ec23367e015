// fmflow trace view. Everything shown comes from the trace and may hold model output, so text
// goes into the page only through textContent and attributes set by name: never as HTML.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("trace-data").textContent);
  const PAGE = 1000;                       // rows drawn at a time: 10,000 spans stay quick
  const spans = data.spans;
  const byId = new Map(spans.map((s) => [s.id, s]));
  const origin = data.origin, total = Math.max(data.total, 1e-6);

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "style") Object.assign(node.style, value);
      else node.setAttribute(key, value);
    }
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }
  const ms = (v) => (typeof v === "number" ? (v < 1000 ? v.toFixed(1) + " ms" : (v / 1000).toFixed(2) + " s") : "?");

  // Depth-first order: children under their parent by start time; orphans at the top.
  function ordered() {
    const children = new Map();
    const sorted = spans.slice().sort((a, b) => (a.start || 0) - (b.start || 0));
    for (const s of sorted) {
      const parent = byId.has(s.parent) ? s.parent : null;
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(s);
    }
    const out = [], seen = new Set(), stack = [];
    const push = (parent, depth) => {
      const list = children.get(parent) || [];
      for (let i = list.length - 1; i >= 0; i--) stack.push([list[i], depth]);
    };
    push(null, 0);
    while (stack.length) {
      const [s, depth] = stack.pop();
      if (seen.has(s.id)) continue;
      seen.add(s.id);
      out.push([s, depth]);
      push(s.id, depth + 1);
    }
    for (const s of sorted) if (!seen.has(s.id)) out.push([s, 0]);   // spans in a parent cycle
    return out;
  }

  const rows = ordered();
  const list = document.getElementById("rows");
  let drawn = 0;

  function row(s, depth) {
    const left = ((s.start - origin) / total) * 100;
    const width = (((s.end || s.start) - s.start) / total) * 100;
    const classes = ["bar", "k-" + s.kind];
    if (s.cache_hit) classes.push("cache-hit");
    if (s.error !== null && s.error !== undefined) classes.push("failed");
    if (s.unfinished) classes.push("unfinished");
    const badges = [];
    if (s.cache_hit) badges.push(el("span", { class: "badge cache", text: "cache" }));
    if (s.retries) badges.push(el("span", { class: "badge retry", text: "retries " + s.retries }));
    if (s.error !== null && s.error !== undefined) badges.push(el("span", { class: "badge error", text: "error" }));
    if (s.unfinished) badges.push(el("span", { class: "badge unfinished", text: "unfinished" }));
    const label = el("div", { class: "label", title: s.kind + " " + s.name, style: { paddingLeft: 6 + depth * 14 + "px" } },
      [el("span", { class: "kind", text: s.kind }), el("span", { class: "name", text: s.name }), ...badges]);
    const bar = el("div", { class: classes.join(" "), title: ms(s.duration_ms),
      style: { left: Math.max(0, Math.min(left, 100)) + "%", width: Math.max(0, Math.min(width, 100 - left)) + "%" } });
    const node = el("div", { class: "row", "data-id": s.id }, [label, el("div", { class: "track" }, [bar])]);
    node.addEventListener("click", () => select(s.id));
    return node;
  }

  function drawMore() {
    const fragment = document.createDocumentFragment();
    const stop = Math.min(rows.length, drawn + PAGE);
    for (; drawn < stop; drawn++) fragment.appendChild(row(rows[drawn][0], rows[drawn][1]));
    list.appendChild(fragment);
    const more = document.getElementById("more");
    const note = document.getElementById("shown");
    note.textContent = drawn < rows.length
      ? "Showing " + drawn.toLocaleString("en") + " of " + rows.length.toLocaleString("en") + " spans."
      : rows.length.toLocaleString("en") + " spans.";
    more.hidden = drawn >= rows.length;
  }

  function axis() {
    const ticks = document.querySelector("#axis .ticks");
    for (let i = 0; i <= 4; i++) {
      const place = i === 0 ? "first" : i === 4 ? "last" : "mid";
      ticks.appendChild(el("span", { class: "tick " + place, text: ms((total * 1000 * i) / 4), style: { left: (i * 25) + "%" } }));
    }
  }

  function section(title, body) { return [el("h3", { text: title }), body]; }
  function pre(value) { return el("pre", { text: typeof value === "string" ? value : JSON.stringify(value, null, 2) }); }
  function table(pairs) {
    return el("table", {}, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
      .map(([k, v]) => el("tr", {}, [el("td", { text: k }), el("td", { text: String(v) })])));
  }

  function select(id) {
    const s = byId.get(id);
    const panel = document.getElementById("details");
    panel.replaceChildren();
    if (!s) return;
    for (const node of list.querySelectorAll(".row.selected")) node.classList.remove("selected");
    const node = list.querySelector('.row[data-id="' + CSS.escape(id) + '"]');
    if (node) node.classList.add("selected");
    const prompt = s.prompt && typeof s.prompt === "object" ? s.prompt : null;
    const parts = [el("h2", { text: s.kind + " " + s.name })];
    parts.push(table([["line", s.line], ["duration", ms(s.duration_ms)], ["start", ms((s.start - origin) * 1000)],
      ["model", s.model], ["provider", s.provider], ["answered by", s.response_model],
      ["prompt", prompt ? prompt.name + (prompt.version != null ? " v" + prompt.version : "") : null],
      ["tokens in", s.tokens_in], ["tokens out", s.tokens_out],
      ["cost", typeof s.cost === "number" ? "$" + s.cost.toFixed(6) : null],
      ["cache hit", s.kind === "model" ? (s.cache_hit ? "yes" : "no") : null], ["retries", s.retries],
      ["finish", s.finish_reason], ["temperature", s.temperature], ["max tokens", s.max_tokens]]));
    if (s.error !== null && s.error !== undefined) parts.push(...section("Error", el("pre", { class: "error-text", text: String(s.error) })));
    if (Array.isArray(s.attempts) && s.attempts.length) {
      parts.push(...section("Failed attempts", el("table", {}, s.attempts.map((a) => el("tr", {}, [
        el("td", { text: "#" + a.attempt }), el("td", { text: (a.status ? a.status + " " : "") + a.error + (a.waited ? " (waited " + ms(a.waited * 1000) + ")" : "") })])))));
    }
    const messages = s.inputs && Array.isArray(s.inputs.messages) ? s.inputs.messages : null;
    if (messages) {
      parts.push(...section("Messages", el("div", {}, messages.map((m) => el("div", { class: "message" },
        [el("div", { class: "role", text: String(m.role) }), pre(m.content === undefined ? m : m.content)])))));
      parts.push(...section("Reply", el("div", { class: "message reply" }, [pre(s.output === null ? "" : s.output)])));
      if (s.tool_calls) parts.push(...section("Tool calls", pre(s.tool_calls)));
    } else {
      if (s.inputs && Object.keys(s.inputs).length) parts.push(...section("Inputs", pre(s.inputs)));
      if (s.output !== null && s.output !== undefined) parts.push(...section("Output", pre(s.output)));
    }
    panel.append(...parts);
  }

  document.getElementById("more").addEventListener("click", drawMore);
  axis();
  drawMore();
  const wanted = /^#span=(.+)$/.exec(decodeURIComponent(location.hash));
  if (wanted) {
    while (drawn < rows.length && !list.querySelector('.row[data-id="' + CSS.escape(wanted[1]) + '"]')) drawMore();
    select(wanted[1]);
  } else {
    const firstModel = rows.find(([s]) => s.kind === "model");
    select((firstModel || rows[0] || [{}])[0].id);
  }
  document.body.setAttribute("data-ready", "yes");
})();
