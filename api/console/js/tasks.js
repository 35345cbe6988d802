// Tasks: the list (status filter, paging), the run-code form, and a task's page with
// its output arriving live over SSE.
import { ApiError, api, followEvents } from "./api.js";
import { fileList } from "./files.js";
import { TERMINAL, action, errorSlot, h, showError, statusBadge, view, when } from "./ui.js";
import { refreshUsage } from "./usage.js";

const STATUSES = ["queued", "dispatched", "running", "completed", "failed", "timed_out", "cancelled"];
const PAGE = 20;

export async function taskList(params) {
  const status = params.get("status") || "";
  const token = params.get("page") || "";
  const limit = params.get("limit") || String(PAGE);
  const filter = h("select", { id: "status-filter" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s.replace("_", " "))));
  filter.addEventListener("change", () => { location.hash = `#/tasks?${new URLSearchParams({ status: filter.value, limit })}`; });
  const slot = errorSlot();
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  view(h("h1", {}, "Tasks"),
    h("div", { class: "toolbar" }, h("label", { class: "inline" }, "Status ", filter), h("a", { href: "#/run" }, "Run code…")),
    slot,
    h("table", { id: "tasks" }, h("thead", {}, h("tr", {}, ["Task", "Kind", "Status", "Created", "Exit"].map((t) => h("th", {}, t)))), body),
    pager);
  const query = new URLSearchParams({ limit });
  if (status) query.set("status", status);
  if (token) query.set("pageToken", token);
  try {
    const page = await api(`/api/tasks?${query}`);
    body.replaceChildren(...page.tasks.map((task) => h("tr", { dataset: { id: task.id } },
      h("td", {}, h("a", { href: `#/tasks/${task.id}` }, task.id)),
      h("td", {}, task.kind), h("td", {}, statusBadge(task.status)), h("td", {}, when(task.createdAt)),
      h("td", {}, task.result && task.result.exitCode !== undefined ? String(task.result.exitCode) : ""))));
    if (!page.tasks.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No tasks.")));
    if (token) pager.append(h("button", { type: "button", class: "secondary", onclick: () => history.back() }, "Back"));
    if (page.nextPageToken) {
      const next = new URLSearchParams({ page: page.nextPageToken, limit, ...(status ? { status } : {}) });
      pager.append(h("button", { type: "button", class: "secondary", id: "next-page", onclick: () => { location.hash = `#/tasks?${next}`; } }, "Next page"));
    }
  } catch (error) {
    showError(slot, error);
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
  const button = h("button", { type: "submit", id: "run" }, "Run");
  const form = h("form", { class: "card", id: "run-form" },
    h("div", { class: "row" }, h("div", {}, h("label", { for: "language" }, "Language"), language),
      h("div", {}, h("label", { for: "timeout" }, "Timeout (s)"), timeout),
      h("div", {}, h("label", { for: "memory" }, "Memory (MB)"), memory)),
    h("label", { for: "code" }, "Code"), code,
    h("label", { for: "stdin" }, "Standard input"), stdin,
    h("label", { for: "files" }, "Files for /workspace"), files,
    h("p", { class: "note" }, "Small text files are sent as text, other small files as base64, larger ones as uploads."),
    h("label", { class: "inline" }, network, "Network access"),
    slot, button);
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
  }));
  view(h("h1", {}, "Run code"), form);
}

export async function taskPage(id, signal) {
  const slot = errorSlot();
  view(h("h1", {}, "Task ", h("code", {}, id)), slot);
  let task;
  try {
    task = await api(`/api/tasks/${id}`);
  } catch (error) {
    showError(slot, error);
    return;
  }
  const badge = h("span", { id: "task-status" }, statusBadge(task.status));
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
      inputSummary(task.input), outcome, cancel, cancelSlot),
    h("section", {}, h("h2", {}, "Standard output"), stdout, h("h2", {}, "Standard error"), stderr),
    h("section", {}, h("h2", {}, "Files"), files),
    h("section", { id: "egress", hidden: !task.input.network || task.input.network === true },
      h("h2", {}, "Network"), h("table", {}, h("thead", {}, h("tr", {}, ["Host", "Allowed", "Sent", "Received", "Reason"].map((t) => h("th", {}, t)))), egress)),
    h("section", {}, h("details", {}, h("summary", {}, "Events"), events)),
    slot);

  function update(latest) {
    task = latest;
    badge.replaceChildren(statusBadge(task.status));
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
    events.append(h("li", {}, `${event.seq} ${event.type} `, h("code", {}, typeof event.data === "string" ? event.data : JSON.stringify(event.data))));
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
  return h("details", { open: true }, h("summary", {}, "Prompt"), h("pre", {}, input.prompt));
}

function describeOutcome(task) {
  const parts = [];
  const result = task.result || {};
  if (result.exitCode !== undefined) parts.push(h("div", { id: "exit-code" }, `Exit code ${result.exitCode} · ${result.durationMs} ms`));
  if (typeof result.text === "string") parts.push(h("div", { class: "message assistant" }, result.text));
  if (task.error) parts.push(h("div", { class: "error" }, `${task.error.message} `, h("code", {}, `(${task.error.code})`)));
  return parts;
}
