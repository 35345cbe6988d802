// Tasks: the list (status filter, paging), the run-code form, and a task's page with
// its output arriving live over SSE.
import { ApiError, api, followEvents } from "./api.js";
import { fileList } from "./files.js";
import {
  TERMINAL, action, clock, ctrlEnterSubmits, duration, errorSlot, exitCodeOf, h, markdown,
  tableNote, showError, statusBadge, view, when,
} from "./ui.js";
import { refreshUsage } from "./usage.js";

const STATUSES = ["queued", "dispatched", "running", "completed", "failed", "timed_out", "cancelled"];
const PAGE = 20;

// The list refreshes itself this often while it is shown.
const LIST_REFRESH_MS = 3000;

/** What a task ran, in a line: the code's first line, or the agent and its prompt. */
function whatRan(task, agentNames) {
  const input = task.input || {};
  if (task.kind === "code") {
    const line = (input.code || "").split("\n").find((l) => l.trim()) || "";
    return [h("span", { class: "tag" }, input.language || "code"), " ", h("code", {}, clip(line, 60))];
  }
  if (task.kind === "environment") {
    return [h("span", { class: "tag" }, "environment"), " ", h("code", {}, clip(`${input.name}: ${(input.python || []).join(" ")}`, 60))];
  }
  const agent = input.agentId ? agentNames[input.agentId] || "agent" : "agent";
  return [h("span", { class: "tag" }, agent), " ", clip(input.prompt || "", 60)];
}

function clip(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

export async function taskList(params, signal) {
  const status = params.get("status") || "";
  const token = params.get("page") || "";
  const limit = params.get("limit") || String(PAGE);
  const filter = h("select", { id: "status-filter" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s.replace("_", " "))));
  filter.addEventListener("change", () => { location.hash = `#/tasks?${new URLSearchParams({ status: filter.value, limit })}`; });
  const slot = errorSlot();
  const columns = ["Task", "What ran", "Status", "Took", "Created"];
  const body = h("tbody");
  const foot = tableNote(columns.length, "Loading tasks…");
  const pager = h("div", { class: "pager" });
  view(h("h1", {}, "Tasks"),
    h("div", { class: "toolbar" }, h("label", { class: "inline" }, "Status ", filter), h("a", { href: "#/run" }, "Run code…")),
    slot,
    h("div", { class: "table-wrap" }, h("table", { id: "tasks", class: "stack" },
      h("thead", {}, h("tr", {}, columns.map((t) => h("th", {}, t)))), body, foot)),
    pager);
  const query = new URLSearchParams({ limit });
  if (status) query.set("status", status);
  if (token) query.set("pageToken", token);
  let agentNames = {};
  try {
    agentNames = Object.fromEntries((await api("/api/agents", { signal })).agents.map((a) => [a.id, a.name]));
  } catch {
    // names are a nicety: the list shows "agent" without them
  }
  const row = (task) => h("tr", { dataset: { id: task.id, status: task.status } },
    h("td", { class: "id" }, h("a", { href: `#/tasks/${task.id}` }, task.id)),
    h("td", { class: "what" }, whatRan(task, agentNames)),
    h("td", {}, statusBadge(task.status, exitCodeOf(task))),
    h("td", { class: "took" }, duration(task) || ""),
    h("td", { class: "created" }, when(task.createdAt)));
  let first = true;
  while (!signal || !signal.aborted) {
    try {
      const page = await api(`/api/tasks?${query}`, { signal });
      body.replaceChildren(...page.tasks.map(row));
      foot.note();
      if (!page.tasks.length) {
        foot.note(status ? "No tasks with this status." : "No tasks yet. ",
          status ? null : h("a", { href: "#/run" }, "Run some code."));
      }
      if (first) {
        if (token) pager.append(h("button", { type: "button", class: "secondary", onclick: () => history.back() }, "Back"));
        if (page.nextPageToken) {
          const next = new URLSearchParams({ page: page.nextPageToken, limit, ...(status ? { status } : {}) });
          pager.append(h("button", { type: "button", class: "secondary", id: "next-page", onclick: () => { location.hash = `#/tasks?${next}`; } }, "Next page"));
        }
        first = false;
      }
      showError(slot, null);
    } catch (error) {
      if (error.name === "AbortError") return;
      showError(slot, error);
    }
    if (!signal) return;
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, LIST_REFRESH_MS);
      signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }
}

// Files up to this size go inline in the task (text, or base64); larger ones are
// uploaded first (POST /api/uploads) and named by their upload id.
const INLINE_FILE_BYTES = 64 * 1024;
// Cloud Run takes at most 32 MiB in one request: a bigger file goes up in parts
// (POST /api/uploads?parts=N, then PUT /api/uploads/{id}/parts/{i}).
const UPLOAD_PART_BYTES = 32 * 1024 * 1024;

/** Upload a File, in parts if it is over one request's worth; the complete upload. */
async function upload(file) {
  if (file.size <= UPLOAD_PART_BYTES) return api("/api/uploads", { method: "POST", raw: file });
  const parts = Math.ceil(file.size / UPLOAD_PART_BYTES);
  const pending = await api(`/api/uploads?parts=${parts}`, { method: "POST" });
  let answer = pending;
  for (let i = 0; i < parts; i++) {
    const raw = file.slice(i * UPLOAD_PART_BYTES, (i + 1) * UPLOAD_PART_BYTES);
    answer = await api(`/api/uploads/${pending.id}/parts/${i}`, { method: "PUT", raw });
  }
  return answer;
}

/** A File as the API's `files` value: text as a string, other bytes as base64, a
 * large file as an upload. */
async function fileValue(file) {
  if (file.size > INLINE_FILE_BYTES) {
    try {
      return { upload: (await upload(file)).id };
    } catch (error) {
      if (error.status !== 404) throw error;
      throw new ApiError(404, "uploads_unavailable",
        `${file.name} is larger than ${INLINE_FILE_BYTES / 1024} KiB, and this deployment takes no uploads (POST /api/uploads): send a smaller file.`, null);
    }
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return { base64: btoa(binary) };
  }
}

export function runForm(config) {
  const language = h("select", { id: "language", name: "language" }, config.languages.map((l) => h("option", { value: l }, l)));
  const code = h("textarea", { id: "code", name: "code", rows: 10, spellcheck: false, placeholder: "print(6 * 7)" });
  const stdin = h("textarea", { id: "stdin", name: "stdin", rows: 2, spellcheck: false });
  const files = h("input", { type: "file", id: "files", multiple: true });
  const timeout = h("input", { type: "number", id: "timeout", value: "60" });
  const memory = h("input", { type: "number", id: "memory", value: "512" });
  const network = h("input", { type: "checkbox", id: "network" });
  const slot = errorSlot();
  const button = h("button", { type: "submit", id: "run", title: "Ctrl+Enter" }, "Run");
  const form = h("form", { class: "card", id: "run-form" },
    h("div", { class: "row" }, h("div", {}, h("label", { for: "language" }, "Language"), language),
      h("div", {}, h("label", { for: "timeout" }, "Timeout (s)"), timeout),
      h("div", {}, h("label", { for: "memory" }, "Memory (MB)"), memory)),
    h("label", { for: "code" }, "Code ", h("span", { class: "muted hint" }, "Ctrl+Enter runs it")), code,
    h("label", { for: "stdin" }, "Standard input"), stdin,
    h("label", { for: "files" }, "Files for /workspace"), files,
    h("p", { class: "note" }, "Small text files are sent as text, other small files as base64, larger ones as uploads."),
    h("label", { class: "inline" }, network, "Network access"),
    slot, button);
  ctrlEnterSubmits(code, form);
  const fields = { language, code, stdin, files, timeoutSeconds: timeout, memoryMb: memory, network };
  form.addEventListener("submit", action(button, slot, async () => {
    const body = {
      kind: "code", language: language.value, code: code.value, stdin: stdin.value,
      timeoutSeconds: Number(timeout.value), memoryMb: Number(memory.value), network: network.checked,
    };
    if (files.files.length) {
      body.files = {};
      for (const file of files.files) body.files[file.name] = await fileValue(file);
    }
    const task = await api("/api/tasks", { method: "POST", body });
    location.hash = `#/tasks/${task.id}`;
  }, fields));
  view(h("h1", {}, "Run code"), form);
}

export async function taskPage(id, signal) {
  const slot = errorSlot();
  view(h("h1", {}, "Task ", h("code", {}, id)), slot, h("p", { class: "muted loading" }, "Loading the task…"));
  let task;
  try {
    task = await api(`/api/tasks/${id}`);
  } catch (error) {
    showError(slot, error);
    return;
  }
  const badge = h("span", { id: "task-status" }, statusBadge(task.status, exitCodeOf(task)));
  const execution = h("div", { id: "execution", class: "muted" });
  const cancelSlot = errorSlot();
  const cancel = h("button", { type: "button", class: "danger", id: "cancel" }, "Cancel");
  cancel.addEventListener("click", action(cancel, cancelSlot, async () => update(await api(`/api/tasks/${id}/cancel`, { method: "POST" }))));
  const stdout = h("pre", { id: "stdout" });
  const stderr = h("pre", { id: "stderr", class: "stderr" });
  const events = h("ol", { class: "events", id: "events" });
  const egress = h("tbody"); // the connections its program made through the egress proxy
  const outcome = h("div", { id: "outcome" });
  const files = h("div", { id: "files" });
  view(h("h1", {}, "Task ", h("code", {}, id), " ", badge),
    h("section", {}, h("div", { class: "muted" }, `${task.kind} · created ${when(task.createdAt)}`),
      execution, inputSummary(task.input), outcome, cancel, cancelSlot),
    h("section", {}, h("h2", {}, "Standard output"), stdout, h("h2", {}, "Standard error"), stderr),
    h("section", {}, h("h2", {}, "Files"), files),
    h("section", { id: "egress", hidden: !task.input.network || task.input.network === true },
      h("h2", {}, "Network"), h("table", {}, h("thead", {}, h("tr", {}, ["Host", "Allowed", "Sent", "Received", "Reason"].map((t) => h("th", {}, t)))), egress)),
    h("section", {}, h("details", {}, h("summary", {}, "Events"), events)),
    slot);

  function update(latest) {
    task = latest;
    badge.replaceChildren(statusBadge(task.status, exitCodeOf(task)));
    execution.replaceChildren(...describeExecution(task));
    cancel.hidden = TERMINAL.has(task.status);
    if (!TERMINAL.has(task.status)) {
      files.replaceChildren(h("p", { class: "muted" }, "Its files are listed when the task has ended."));
      return;
    }
    const result = task.result || {};
    if (typeof result.stdout === "string") stdout.textContent = result.stdout + (result.stdoutTruncated ? "\n[truncated]" : "");
    if (typeof result.stderr === "string") stderr.textContent = result.stderr + (result.stderrTruncated ? "\n[truncated]" : "");
    outcome.replaceChildren(...describeOutcome(task));
    files.replaceChildren(fileList(`/api/tasks/${id}/files`, result.files, result.skipped));
  }

  const onEvent = (event) => {
    events.append(h("li", { dataset: { seq: String(event.seq), type: event.type } },
      h("time", { datetime: event.at || "", title: when(event.at) }, clock(event.at)), ` ${event.seq} ${event.type} `,
      h("code", {}, typeof event.data === "string" ? event.data : JSON.stringify(event.data))));
    if (event.type === "stdout") stdout.append(event.data);
    else if (event.type === "stderr") stderr.append(event.data);
    else if (event.type === "status" && event.data && event.data.status) badge.replaceChildren(statusBadge(event.data.status));
    else if (event.type === "egress") egress.append(egressRow(event.data));
  };
  update(task);
  if (TERMINAL.has(task.status)) {
    try {
      (await api(`/api/tasks/${id}/events?after=0`, { signal })).events.forEach((e) => { if (e.type !== "stdout" && e.type !== "stderr") onEvent(e); });
    } catch (error) {
      if (error.name !== "AbortError") showError(slot, error);
    }
    return;
  }
  await followEvents(id, {
    signal,
    onEvent,
    onError: (error) => showError(slot, error),
    isDone: async () => {
      update(await api(`/api/tasks/${id}`, { signal }));
      showError(slot, null);
      return TERMINAL.has(task.status);
    },
  });
  refreshUsage();
}

function egressRow(connection) {
  return h("tr", { class: connection.allowed ? "allowed" : "refused" },
    h("td", {}, h("code", {}, `${connection.host}:${connection.port}`)), h("td", {}, connection.allowed ? "yes" : "refused"),
    h("td", {}, String(connection.bytesSent ?? "")), h("td", {}, String(connection.bytesReceived ?? "")), h("td", {}, connection.reason || ""));
}

function inputSummary(input) {
  if (input.kind === "code") {
    return h("details", { open: true }, h("summary", {}, `${input.language} · timeout ${input.timeoutSeconds} s · ${input.memoryMb} MB`), h("pre", {}, input.code));
  }
  if (input.kind === "environment") {
    return h("details", { open: true }, h("summary", {}, `Builds the environment ${input.name}`), h("pre", {}, (input.python || []).join("\n")));
  }
  return h("details", { open: true }, h("summary", {}, "Prompt"), h("pre", {}, input.prompt));
}

/** Where the task ran, how long it took, and links to its logs and execution. */
function describeExecution(task) {
  const parts = [];
  const run = task.execution || {};
  if (run.backend) parts.push(`ran on ${run.backend}${run.sandbox ? ` (${run.sandbox})` : ""}`);
  const took = duration(task);
  if (took) parts.push(`took ${took}`);
  const shown = parts.length ? [parts.join(" · ")] : [];
  if (run.logUri) shown.push(" · ", h("a", { href: run.logUri, id: "log-link", target: "_blank", rel: "noopener noreferrer" }, "Logs"));
  if (run.consoleUri) shown.push(" · ", h("a", { href: run.consoleUri, id: "console-link", target: "_blank", rel: "noopener noreferrer" }, "Cloud Console"));
  return shown;
}

function describeOutcome(task) {
  const parts = [];
  const result = task.result || {};
  if (result.exitCode !== undefined) parts.push(h("div", { id: "exit-code" }, `Exit code ${result.exitCode} · ${result.durationMs} ms`));
  if (typeof result.text === "string") parts.push(markdown(result.text, { class: "message assistant" }));
  if (task.error) parts.push(h("div", { class: "error" }, `${task.error.message} `, h("code", {}, `(${task.error.code})`)));
  return parts;
}
