// The header's usage bar: GET /api/usage, each counter against its limit.
import { api } from "./api.js";
import { h } from "./ui.js";

const SHOWN = [
  ["tasksToday", "tasks today"],
  ["unsettledTasks", "queued or running"],
  ["activeTasks", "running"],
  ["llmTokensToday", "LLM tokens today"],
];

export async function refreshUsage() {
  const bar = document.getElementById("usage");
  try {
    const usage = await api("/api/usage");
    bar.replaceChildren(...SHOWN.filter(([key]) => usage[key]).map(([key, label]) => {
      const { used, limit } = usage[key];
      return h("span", { dataset: { counter: key }, title: `resets ${new Date(usage.resetsAt).toLocaleString()}` },
        h("meter", { min: 0, max: limit, value: used, high: limit * 0.8 }), ` ${used.toLocaleString()} / ${limit.toLocaleString()} ${label}`);
    }));
    bar.hidden = false;
  } catch {
    bar.hidden = true; // the page itself shows what went wrong with its own calls
  }
}
