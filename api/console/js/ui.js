// Small DOM helpers: no framework, no innerHTML (text is always set as text, so
// nothing a task prints can become markup). The one exception is an agent's reply,
// rendered from Markdown and sanitised by DOMPurify (vendor/markdown.js) first.
import { renderMarkdown } from "../vendor/markdown.js";

/** h("a", {href: "#/x", onclick}, "text", child) */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return element;
}

export function view(...children) {
  const main = document.getElementById("view");
  main.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
  return main;
}

/** An API error as a person reads it: its message, its code, and when to retry. */
export function errorBox(error) {
  const parts = [h("span", { class: "message" }, error.message || String(error))];
  if (error.code) parts.push(" ", h("code", {}, `(${error.code})`));
  if (error.retryAfter) {
    const at = new Date(Date.now() + error.retryAfter * 1000).toLocaleTimeString();
    parts.push(h("div", { class: "retry" }, `Retry in ${error.retryAfter} s (at ${at}).`));
  }
  return h("div", { class: "error", role: "alert" }, ...parts);
}

/** Show `error` in `slot` (an element where the action was taken); null clears it. */
export function showError(slot, error) {
  slot.replaceChildren(...(error ? [errorBox(error)] : []));
}

export function errorSlot() {
  return h("div", { class: "error-slot" });
}

/** A task's status; a program that completed with a non-zero exit code reads
 * `exit N`, in red. Any value the API may add later shows as itself. */
export function statusBadge(status, exitCode = null) {
  const name = typeof status === "string" && status ? status : "unknown";
  if (name === "completed" && typeof exitCode === "number" && exitCode !== 0) {
    return h("span", { class: "status exit-nonzero", dataset: { status: name, exitCode: String(exitCode) },
      title: `Completed: the program exited with code ${exitCode}` }, `exit ${exitCode}`);
  }
  return h("span", { class: `status ${name}`, dataset: { status: name } }, name.replaceAll("_", " "));
}

/** The exit code of a code task's program, or null. */
export function exitCodeOf(task) {
  return task && task.result && typeof task.result.exitCode === "number" ? task.result.exitCode : null;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

/** A time of day to the millisecond, for a task's events. */
export function clock(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  return `${at.toLocaleTimeString([], { hour12: false })}.${String(at.getMilliseconds()).padStart(3, "0")}`;
}

/** How long a task ran (started to finished), or null while it has not ended. */
export function duration(task) {
  if (!task.startedAt || !task.finishedAt) return null;
  const ms = new Date(task.finishedAt) - new Date(task.startedAt);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** An agent's reply rendered from Markdown, sanitised. */
export function markdown(text, attrs = {}) {
  return h("div", { ...attrs, class: `markdown ${attrs.class || ""}`.trim() }, renderMarkdown(text));
}

/** A table's footer that says its rows are on their way, or that there are none: kept
 * out of the tbody, which holds real rows only. `foot.note(text, ...)` shows a note,
 * `foot.note()` clears it. */
export function tableNote(columns, text) {
  const foot = h("tfoot", { class: "placeholder" });
  foot.note = (message, ...extra) => foot.replaceChildren(...(message
    ? [h("tr", {}, h("td", { colspan: columns, class: "muted" }, message, ...extra))] : []));
  foot.note(text);
  return foot;
}

/** Enter submits `form` (Shift+Enter is a new line): a chat box. */
export function enterSubmits(textarea, form) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.ctrlKey && !event.metaKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}

/** Ctrl+Enter (⌘+Enter on a Mac) submits `form`: a code editor, where Enter is a new line. */
export function ctrlEnterSubmits(textarea, form) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}

/**
 * Mark the inputs an API validation error names. The API writes "timeoutSeconds:
 * Input should be ...; memoryMb: ..."; `fields` maps those names to inputs. Each named
 * input is outlined and gets the message under it; null clears every mark.
 */
export function markFields(fields, error) {
  for (const input of Object.values(fields)) {
    input.classList.remove("invalid");
    input.removeAttribute("aria-invalid");
    const note = input.parentElement && input.parentElement.querySelector(`.field-error[data-for="${input.id}"]`);
    if (note) note.remove();
  }
  if (!error || error.status !== 400 || typeof error.message !== "string") return;
  for (const part of error.message.split("; ")) {
    const [where, ...rest] = part.split(": ");
    const input = fields[where.split(".")[0]];
    if (!input || !rest.length) continue;
    input.classList.add("invalid");
    input.setAttribute("aria-invalid", "true");
    input.after(h("div", { class: "field-error", dataset: { for: input.id } }, rest.join(": ")));
  }
}

export const TERMINAL = new Set(["completed", "failed", "timed_out", "cancelled"]);

/** Run an async action from a button: disabled and busy while it runs, errors into
 * `slot`, and the inputs a validation error names (`fields`, see markFields) marked. */
export function action(button, slot, work, fields = null) {
  return async (event) => {
    if (event) event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    button.classList.add("busy");
    showError(slot, null);
    if (fields) markFields(fields, null);
    try {
      await work();
    } catch (error) {
      showError(slot, error);
      if (fields) markFields(fields, error);
    } finally {
      button.disabled = false;
      button.classList.remove("busy");
    }
  };
}
