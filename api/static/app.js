// costrag's web page. It talks only to the public /v1 API (what the page does, a script can do), with the
// API key kept in this tab's session storage and sent as a bearer token.

const KEY_STORE = "costrag.apiKey";
const VIEWS = ["documents", "ask", "costs"];
const HISTORY_TURNS = 20; // earlier turns sent with a follow-up (the server bounds what the rewriter reads)
const HOURS_SHOWN = 48;
const DAYS_SHOWN = 14;

const $ = (selector, root = document) => root.querySelector(selector);

/** Build an element: el("td", {class: "num"}, "12"). Text only: nothing from the API becomes markup. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders(extra = {}) {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

/** The API's error body ({"error": {"message"}}) as a readable message, with Retry-After when given. */
function errorMessage(status, statusText, text, retryAfter) {
  let message = `${status} ${statusText || "error"}`;
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) message = body.error.message;
  } catch {
    // not JSON (a proxy's page, say): the status line is the message
  }
  return retryAfter ? `${message} (try again in ${retryAfter} s)` : message;
}

async function failure(response) {
  const text = await response.text();
  return new ApiError(response.status, errorMessage(response.status, response.statusText, text, response.headers.get("Retry-After")));
}

async function send(path, { method = "GET", json, body } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: authHeaders(json === undefined ? {} : { "Content-Type": "application/json" }),
      body: json === undefined ? body : JSON.stringify(json),
    });
  } catch {
    throw new ApiError(0, "The service cannot be reached. Is it running?");
  }
  if (!response.ok) throw await failure(response);
  return response;
}

async function api(path, options) {
  return (await send(path, options)).json();
}

// ---------------------------------------------------------------- formatting

const usd = (value) => (value === null || value === undefined ? "—" : `$${Math.abs(value) >= 100 ? value.toFixed(2) : value.toFixed(6)}`);
const count = (value) => Number(value).toLocaleString("en-US");
const share = (part, whole) => (whole ? `${((100 * part) / whole).toFixed(1)}%` : "—");

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// ---------------------------------------------------------------- notices, sign-in, views

let notified = null;
function notify(message) {
  const box = $("#notice");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(notified);
  notified = setTimeout(() => (box.hidden = true), 12000);
}

/** Any API failure outside a form: a refused key signs out, the rest is shown as the API worded it. */
function report(error) {
  if (error instanceof ApiError && error.status === 401) {
    signOut("The API key was refused; sign in again.");
    return;
  }
  notify(error.message || String(error));
}

let signedIn = false;
let signInAttempts = 0; // only the latest attempt's answer counts: the page's probe at load may answer late

async function signIn(key, { quiet = false } = {}) {
  const attempt = ++signInAttempts;
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
  try {
    const usage = await api("/v1/usage");
    if (attempt !== signInAttempts) return;
    signedIn = true;
    $("#tenant-name").textContent = `tenant ${usage.tenant}`;
    $("#tabs").hidden = $("#who").hidden = false;
    $("#sign-in-error").hidden = true;
    $("#api-key").value = "";
    route();
  } catch (error) {
    if (attempt !== signInAttempts) return;
    sessionStorage.removeItem(KEY_STORE);
    if (!quiet) {
      showSignIn(error.status === 401 ? "That key was refused: check it, or create one with `rag keys create`." : error.message);
    } else {
      showSignIn();
    }
  }
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORE);
  signedIn = false;
  conversation.reset();
  $("#tabs").hidden = $("#who").hidden = true;
  showSignIn(message);
}

function showView(id) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== id;
}

/** The sign-in form, with ``message`` (why the page is there) under it when given. */
function showSignIn(message) {
  if (message) {
    $("#sign-in-error").textContent = message;
    $("#sign-in-error").hidden = false;
  }
  showView("view-sign-in");
  $("#api-key").focus();
}

function route() {
  if (!signedIn) return showSignIn();
  const wanted = location.hash.slice(1);
  const view = VIEWS.includes(wanted) ? wanted : "documents";
  showView(`view-${view}`);
  for (const tab of document.querySelectorAll("#tabs a")) {
    if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (view === "documents") documents.load().catch(report);
  if (view === "costs") costs.load().catch(report);
  if (view === "ask") $("#question").focus();
}

// ---------------------------------------------------------------- documents

const documents = {
  chosen: [],
  all: [],

  async load() {
    this.all = (await api("/v1/documents")).documents;
    this.render();
  },

  render() {
    const needle = $("#doc-search").value.trim().toLowerCase();
    const shown = this.all.filter((d) => d.name.toLowerCase().includes(needle));
    const body = $("#doc-table tbody");
    body.replaceChildren(
      ...shown.map((d) => {
        const remove = el("button", { type: "button", class: "quiet small", "aria-label": `Delete ${d.name}` }, "Delete");
        remove.addEventListener("click", () => this.confirmDelete(d));
        return el(
          "tr",
          { "data-id": d.id },
          el("td", { class: "name" }, d.name),
          el("td", { class: "hide-narrow" }, d.media_type),
          el("td", { class: "num" }, size(d.size_bytes)),
          el("td", { class: "num" }, count(d.chunks)),
          el("td", { class: "hide-narrow" }, when(d.created_at)),
          el("td", {}, remove),
        );
      }),
    );
    $("#doc-empty").hidden = this.all.length > 0;
    $("#doc-count").textContent = needle ? `${shown.length} of ${this.all.length}` : `${this.all.length} documents`;
  },

  confirmDelete(doc) {
    const dialog = $("#confirm-delete");
    $("#confirm-delete-name").textContent = doc.name;
    dialog.returnValue = "";
    dialog.onclose = async () => {
      if (dialog.returnValue !== "delete") return;
      try {
        await send(`/v1/documents/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
        await this.load();
        $("#doc-search").focus();
      } catch (error) {
        report(error);
      }
    };
    dialog.showModal();
  },

  /** A dry run first: what the upload will store and cost, before anything is written. */
  async estimate(files) {
    this.chosen = files;
    $("#upload-progress").replaceChildren();
    const summary = $("#estimate-summary");
    $("#estimate").hidden = false;
    $("#estimate-table tbody").replaceChildren();
    summary.textContent = `Reading ${files.length} file(s)…`;
    $("#upload-confirm").disabled = true;
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    let plan;
    try {
      plan = await api("/v1/documents?dry_run=true", { method: "POST", body: form });
    } catch (error) {
      summary.textContent = "";
      $("#estimate").hidden = true;
      report(error);
      return;
    }
    $("#estimate-table tbody").replaceChildren(
      ...plan.documents.map((d) =>
        el(
          "tr",
          {},
          el("td", { class: "name" }, d.name),
          el("td", { class: `status-${d.status}` }, d.status === "new" ? "indexed" : d.status, d.error ? `: ${d.error}` : ""),
          el("td", { class: "num" }, count(d.chunks.length)),
          el("td", { class: "num hide-narrow" }, count(d.tokens)),
          el("td", { class: "num" }, count(d.embedding_tokens)),
        ),
      ),
    );
    const fresh = plan.documents.filter((d) => d.status === "new").length;
    const time =
      plan.embedding_seconds === null
        ? "embedding time is known after this server's first upload"
        : `about ${plan.embedding_seconds.toFixed(1)} s of embedding`;
    summary.textContent =
      `${fresh} new file(s): ${count(plan.chunks)} chunks, ${count(plan.embedding_tokens)} tokens to embed, ` +
      `${time}, ${usd(plan.embedding_cost_usd)} (the embedder runs on this server).`;
    const confirm = $("#upload-confirm");
    confirm.textContent = `Upload ${fresh} file(s)`;
    confirm.disabled = fresh === 0;
    if (fresh) confirm.focus();
  },

  cancel() {
    this.chosen = [];
    $("#estimate").hidden = true;
    $("#file-input").value = "";
  },

  /** Each file in its own request: its own progress bar and its own status. */
  async upload() {
    const files = this.chosen;
    this.cancel();
    const list = $("#upload-progress");
    const rows = files.map((file) => {
      const bar = el("progress", { max: 1, value: 0, "aria-label": `${file.name} upload` });
      const state = el("span", { class: "state" }, "waiting");
      list.append(el("li", {}, el("span", { class: "file" }, file.name), state, bar));
      return { file, bar, state };
    });
    for (const row of rows) {
      row.state.textContent = "sending";
      const outcome = await uploadOne(row.file, (fraction) => {
        row.bar.value = fraction;
        if (fraction >= 1) {
          row.bar.removeAttribute("value"); // indeterminate while the server parses and embeds
          row.state.textContent = "indexing…";
        }
      });
      row.bar.value = 1;
      row.state.className = `state status-${outcome.status}`;
      row.state.textContent = outcome.error ? `${outcome.status}: ${outcome.error}` : `${outcome.status}, ${count(outcome.chunks)} chunks`;
    }
    await this.load().catch(report);
  },
};

function uploadOne(file, progress) {
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/v1/documents");
    for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
    request.upload.onprogress = (event) => event.lengthComputable && progress(event.loaded / event.total);
    request.upload.onload = () => progress(1);
    request.onload = () => {
      if (request.status === 201) return resolve(JSON.parse(request.responseText).documents[0]);
      if (request.status === 401) report(new ApiError(401, "refused"));
      const message = errorMessage(request.status, request.statusText, request.responseText, request.getResponseHeader("Retry-After"));
      resolve({ status: "rejected", error: message });
    };
    request.onerror = () => resolve({ status: "rejected", error: "the service cannot be reached" });
    const form = new FormData();
    form.append("files", file, file.name);
    request.send(form);
  });
}

// ---------------------------------------------------------------- asking

/** Server-sent events from a fetch body: yields {event, data} as each arrives. */
async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

const conversation = {
  turns: [],

  reset() {
    this.turns = [];
    $("#turns").replaceChildren();
    $("#new-conversation").hidden = true;
    $("#question-label").textContent = "Question";
  },

  async ask(question) {
    const view = turnView(question);
    $("#turns").append(view.root);
    view.root.scrollIntoView({ block: "nearest" });
    try {
      const response = await send("/v1/query", {
        method: "POST",
        json: { question, stream: true, history: this.turns.slice(-HISTORY_TURNS) },
      });
      let finished = null;
      for await (const { event, data } of serverSentEvents(response.body)) {
        if (event === "token") view.answer.append(data.text);
        else if (event === "done") finished = data;
        else if (event === "error") throw new ApiError(0, data.error.message);
      }
      if (!finished) throw new ApiError(0, "The answer stopped before it was finished.");
      view.finish(finished);
      this.turns.push({ question, answer: finished.answer });
      $("#new-conversation").hidden = false;
      $("#question-label").textContent = "Follow-up question";
    } catch (error) {
      view.fail(error);
      if (error.status === 401) report(error);
    }
  },
};

function turnView(question) {
  const answer = el("p", { class: "answer pending" });
  const root = el("li", { class: "turn" }, el("p", { class: "question" }, question), answer);
  return {
    root,
    answer,
    finish(body) {
      answer.classList.remove("pending");
      answer.textContent = body.answer;
      if (body.searched_question && body.searched_question !== question) {
        root.append(el("p", { class: "searched" }, `Searched as: ${body.searched_question}`));
      }
      if (body.citations.length) {
        root.append(
          el(
            "ol",
            { class: "citations", "aria-label": "Sources" },
            ...body.citations.map((c, i) =>
              el("li", {}, el("details", {}, el("summary", {}, `[${i + 1}] ${c.title || c.document_id}`), el("blockquote", {}, c.text))),
            ),
          ),
        );
      }
      root.append(usageLine(body));
    },
    fail(error) {
      answer.classList.remove("pending");
      answer.replaceChildren(el("span", { class: "error" }, error.message));
    },
  };
}

function usageLine(body) {
  const u = body.usage;
  const item = (label, value) => el("span", {}, `${label} `, el("b", {}, value));
  const parts = [
    item("tier", u.tier),
    item("cache", body.cache),
    item("tokens", count(u.prompt_tokens + u.completion_tokens)),
    item("cost", usd(u.cost_usd)),
  ];
  if (u.saved_usd !== null) {
    const by = u.saved_by.length ? ` (${u.saved_by.join(", ")})` : "";
    parts.push(item("saved", `${usd(u.saved_usd)}${by}`), item("reference", usd(u.reference_cost_usd)));
  }
  parts.push(item("time", `${(body.latency_ms / 1000).toFixed(1)} s`));
  return el("p", { class: "meta", "aria-label": "Usage" }, ...parts);
}

// ---------------------------------------------------------------- costs

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

/** Grouped vertical bars (spend and saving per period), drawn as SVG: no chart library to ship. */
function barChart(labels, series, { labelEvery = 1 } = {}) {
  const width = 640, height = 210, left = 92, right = 16, bottom = 22, top = 10;
  const plotHeight = height - top - bottom;
  const peak = Math.max(...series.flatMap((s) => s.values), 0) || 1;
  const slot = (width - left - right) / Math.max(labels.length, 1);
  const bar = Math.max((slot * 0.8) / series.length, 1);
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
  const totals = series.map((s) => `${s.name} ${usd(s.values.reduce((a, b) => a + b, 0))}`).join(", ");
  chart.setAttribute("aria-label", `${labels.length} periods: ${totals}`);
  for (const fraction of [0, 0.5, 1]) {
    const y = top + plotHeight * (1 - fraction);
    chart.append(
      svg("line", { x1: left, x2: width - right, y1: y, y2: y, stroke: "#d9dee5" }),
      svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, usd(peak * fraction)),
    );
  }
  labels.forEach((label, i) => {
    series.forEach((s, j) => {
      const h = (plotHeight * s.values[i]) / peak;
      const x = left + i * slot + slot * 0.1 + j * bar;
      chart.append(
        svg("rect", { x, y: top + plotHeight - h, width: bar, height: Math.max(h, 0), class: s.swatch },
          svg("title", {}, `${label} ${s.name}: ${usd(s.values[i])}`)),
      );
    });
    if (i % labelEvery === 0) {
      chart.append(svg("text", { x: left + i * slot + slot / 2, y: height - 6, "text-anchor": "middle" }, label));
    }
  });
  const legend = el("div", { class: "legend" }, ...series.map((s) => el("span", {}, el("i", { class: s.swatch }), s.name)));
  return [chart, legend];
}

/** Spend and saving per period ({label, cost, saved}), labelling every ``labelEvery``-th period. */
function spendAndSaving(periods, labelEvery) {
  return barChart(
    periods.map((p) => p.label),
    [
      { name: "spend", swatch: "swatch-spend", values: periods.map((p) => p.cost) },
      { name: "saving", swatch: "swatch-save", values: periods.map((p) => p.saved) },
    ],
    { labelEvery },
  );
}

/** Horizontal bars with their values written out (tiers, causes). */
function barList(rows, format) {
  const peak = Math.max(...rows.map((r) => r.value), 0) || 1;
  return el(
    "div",
    { class: "bar-list" },
    ...rows.map((r) => {
      const fill = el("span", { class: "swatch-tier" });
      fill.style.width = `${(100 * r.value) / peak}%`;
      return el("div", { class: "bar-row" }, el("span", {}, r.label), el("div", { class: "meter" }, fill), el("span", { class: "hint" }, format(r)));
    }),
  );
}

function tile(label, value, sub, id) {
  return el("div", { class: "tile", id }, el("div", { class: "label" }, label), el("div", { class: "value" }, value), el("div", { class: "sub" }, sub || ""));
}

const costs = {
  async load() {
    const [usage, hourly] = await Promise.all([api("/v1/usage"), api(`/v1/usage/hourly?hours=${24 * DAYS_SHOWN}`)]);
    const t = usage.total;
    const answered = t.queries - t.cache_hits; // answers a model wrote
    $("#tiles").replaceChildren(
      tile("Spend", usd(t.cost_usd), `since ${when(usage.since)}`, "tile-spend"),
      tile("Saved vs reference", usd(t.saved_usd), `${share(t.saved_usd, t.reference_cost_usd)} of ${usd(t.reference_cost_usd)}`, "tile-saved"),
      tile("Questions answered", count(t.queries), `${count(t.aborted)} streams left early`, "tile-queries"),
      tile("Cache hit rate", share(t.cache_hits, t.queries), `${count(t.cache_hits)} hits`, "tile-cache"),
      tile("Escalation rate", share(t.escalations, answered), `${count(t.escalations)} of ${count(answered)} model answers`, "tile-escalations"),
      tile("Spend today", usd(usage.budget.spent_today_usd), "UTC day", "tile-today"),
      tile(
        "Refused",
        count(Object.values(t.rejected).reduce((a, b) => a + b, 0)),
        Object.entries(t.rejected).map(([reason, n]) => `${reason.replace("_", " ")} ${count(n)}`).join(", ") || "none",
        "tile-refused",
      ),
    );
    this.budget(usage.budget);

    const hours = hourly.hours.slice(-HOURS_SHOWN);
    $("#chart-hourly").replaceChildren(
      ...spendAndSaving(hours.map((h) => ({ label: `${h.hour.slice(11, 13)}h`, cost: h.totals.cost_usd, saved: h.totals.saved_usd })), 6),
    );
    const days = new Map();
    for (const h of hourly.hours) {
      const label = h.hour.slice(5, 10);
      const day = days.get(label) || { label, cost: 0, saved: 0 };
      day.cost += h.totals.cost_usd;
      day.saved += h.totals.saved_usd;
      days.set(label, day);
    }
    $("#chart-daily").replaceChildren(...spendAndSaving([...days.values()], 2));
    const tiers = Object.entries(t.tiers).map(([tier, v]) => ({ label: tier, value: v.cost_usd, v }));
    $("#chart-tiers").replaceChildren(
      tiers.length
        ? barList(tiers, (r) => `${usd(r.value)} · ${count(r.v.calls)} call(s) · ${count(r.v.prompt_tokens + r.v.completion_tokens)} tokens`)
        : el("p", { class: "hint" }, "No model calls yet."),
    );
    const named = ["cache", "routing", "trim", "abstention"];
    const causes = [...new Set([...named, ...Object.keys(t.saved_by)])].map((cause) => ({ label: cause, value: t.saved_by[cause] || 0 }));
    $("#chart-causes").replaceChildren(
      barList(causes, (r) => `${count(r.value)} answers (${share(r.value, t.queries)})`),
      el("p", { class: "hint" }, "cache: served from the answer cache; routing: the cheap tier's answer was kept; trim: the prompt held fewer tokens than the reference's top 10; abstention: nothing retrieved was relevant, so no model was asked."),
    );
    $("#costs-since").textContent = `Counted since ${when(usage.since)} from the service's usage ledger; the reference is the strong tier over the untrimmed top 10 passages.`;
  },

  budget(b) {
    const box = $("#budget");
    if (b.limit_usd_per_day === null) {
      box.replaceChildren(el("p", {}, `No daily limit (set RAG_BUDGET_USD_PER_DAY). Spent today: ${usd(b.spent_today_usd)}.`));
      return;
    }
    const fill = el("span");
    fill.style.width = `${Math.min(100, (100 * b.spent_today_usd) / b.limit_usd_per_day)}%`;
    const meter = el("div", { class: "meter", role: "meter", "aria-valuemin": 0, "aria-valuemax": b.limit_usd_per_day, "aria-valuenow": b.spent_today_usd, "aria-label": "budget used today" }, fill);
    box.replaceChildren(
      meter,
      el("p", {}, `${usd(b.spent_today_usd)} of ${usd(b.limit_usd_per_day)} used today (${share(b.spent_today_usd, b.limit_usd_per_day)}).`),
      el("p", { class: "hint" }, `From ${usd(b.cheap_only_from_usd)} on, questions go to the cheap tier only; at the limit they are refused until ${when(b.resets_at)}.`),
    );
  },
};

// ---------------------------------------------------------------- wiring

function wire() {
  $("#sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("#api-key").value.trim());
  });
  $("#sign-out").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);

  const drop = $("#drop");
  const input = $("#file-input");
  input.addEventListener("change", () => input.files.length && documents.estimate([...input.files]));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) documents.estimate([...event.dataTransfer.files]);
  });
  $("#upload-confirm").addEventListener("click", () => documents.upload());
  $("#upload-cancel").addEventListener("click", () => documents.cancel());
  $("#doc-search").addEventListener("input", () => documents.render());

  const form = $("#ask-form");
  const question = $("#question");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = question.value.trim();
    if (!text) return;
    const button = $("#ask-button");
    button.disabled = true;
    question.value = "";
    await conversation.ask(text);
    button.disabled = false;
    question.focus();
  });
  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  $("#new-conversation").addEventListener("click", () => {
    conversation.reset();
    question.focus();
  });
  $("#costs-refresh").addEventListener("click", () => costs.load().catch(report));
}

wire();
// A key from earlier in this tab, or none: a server with RAG_AUTH=off lets the page in without one.
signIn(sessionStorage.getItem(KEY_STORE) || "", { quiet: true });
