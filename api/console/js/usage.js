// The header's usage bar: GET /api/usage, each counter against its limit.
import { api } from "./api.js";
import { h } from "./ui.js";

const SHOWN = [
  ["tasksToday", "tasks today"],
  ["unsettledTasks", "queued or running"],
  ["activeTasks", "running"],
  ["llmTokensToday", "LLM tokens today"],
];

const USD = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 4 });

// Model spend today against the daily cost budget, and this month; estimates from the
// deployment's price table, and labelled so.
function cost(usage) {
  const { used, limit } = usage.costUsdToday;
  const title = "An estimate from the price table (MODEL_PRICES), not Anthropic's invoice";
  return h("span", { dataset: { counter: "costUsdToday" }, title },
    limit ? h("meter", { min: 0, max: limit, value: used, high: limit * 0.8 }) : "",
    ` ≈ ${USD.format(used)}${limit ? ` / ${USD.format(limit)}` : ""} today, ≈ ${USD.format(usage.costUsdMonth)} this month (estimate)`);
}

export async function refreshUsage() {
  const bar = document.getElementById("usage");
  try {
    const usage = await api("/api/usage");
    const counters = SHOWN.filter(([key]) => usage[key]).map(([key, label]) => {
      const { used, limit } = usage[key];
      return h("span", { dataset: { counter: key }, title: `resets ${new Date(usage.resetsAt).toLocaleString()}` },
        h("meter", { min: 0, max: limit, value: used, high: limit * 0.8 }), ` ${used.toLocaleString()} / ${limit.toLocaleString()} ${label}`);
    });
    if (usage.costUsdToday) counters.push(cost(usage));
    bar.replaceChildren(...counters);
    bar.hidden = false;
  } catch {
    bar.hidden = true; // the page itself shows what went wrong with its own calls
  }
}
