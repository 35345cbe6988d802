// Small DOM helpers: no framework, no innerHTML (text is always set as text, so
// nothing a task prints can become markup).

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

export function statusBadge(status) {
  return h("span", { class: `status ${status}`, dataset: { status } }, status.replace("_", " "));
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

export const TERMINAL = new Set(["completed", "failed", "timed_out", "cancelled"]);

/** Run an async action from a button: disabled while it runs, errors into `slot`. */
export function action(button, slot, work) {
  return async (event) => {
    if (event) event.preventDefault();
    button.disabled = true;
    showError(slot, null);
    try {
      await work();
    } catch (error) {
      showError(slot, error);
    } finally {
      button.disabled = false;
    }
  };
}
