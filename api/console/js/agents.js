// Agents: list, create, edit and delete, with every field the API takes. The model,
// tool and engine choices come from GET /api/config, so they follow the deployment.
import { api } from "./api.js";
import { action, errorSlot, h, tableNote, showError, view, when } from "./ui.js";

export async function agentList() {
  const slot = errorSlot();
  const body = h("tbody");
  const foot = tableNote(5, "Loading agents…");
  view(h("h1", {}, "Agents"), h("div", { class: "toolbar" }, h("a", { href: "#/agents/new", id: "new-agent" }, "New agent…")), slot,
    h("div", { class: "table-wrap" }, h("table", { id: "agents", class: "stack" },
      h("thead", {}, h("tr", {}, ["Name", "Model", "Tools", "Updated", ""].map((t) => h("th", {}, t)))), body, foot)));
  try {
    const { agents } = await api("/api/agents");
    body.replaceChildren(...agents.map((agent) => {
      const rowSlot = errorSlot();
      const remove = h("button", { type: "button", class: "danger delete" }, "Delete");
      remove.addEventListener("click", action(remove, rowSlot, async () => {
        if (!confirm(`Delete agent ${agent.name}?`)) return;
        await api(`/api/agents/${agent.id}`, { method: "DELETE" });
        row.remove();
      }));
      const row = h("tr", { dataset: { id: agent.id } },
        h("td", {}, h("a", { href: `#/agents/${agent.id}` }, agent.name), h("div", { class: "muted" }, agent.description)),
        h("td", {}, agent.model + (agent.engine ? ` · ${agent.engine}` : "")), h("td", {}, agent.tools.join(", ")),
        h("td", {}, when(agent.updatedAt)), h("td", {}, remove, rowSlot));
      return row;
    }));
    foot.note();
    if (!agents.length) foot.note("No agents yet. ", h("a", { href: "#/agents/new" }, "Create one."));
  } catch (error) {
    showError(slot, error);
  }
}

export async function agentForm(config, id) {
  const slot = errorSlot();
  let agent = null;
  if (id) {
    try {
      agent = await api(`/api/agents/${id}`);
    } catch (error) {
      view(h("h1", {}, "Agent"), slot);
      showError(slot, error);
      return;
    }
  }
  const value = (name, fallback) => (agent && agent[name] !== undefined && agent[name] !== null ? agent[name] : fallback);
  const name = h("input", { type: "text", id: "agent-name", required: true, value: value("name", "") });
  const description = h("input", { type: "text", id: "agent-description", value: value("description", "") });
  const systemPrompt = h("textarea", { id: "agent-system-prompt", rows: 5 });
  systemPrompt.value = value("systemPrompt", "");
  const model = h("select", { id: "agent-model" }, config.models.allowed.map((m) => h("option", { value: m, selected: m === value("model", config.models.default) }, m)));
  const tools = config.tools.map((tool) => h("input", { type: "checkbox", name: "tools", value: tool, checked: value("tools", config.tools).includes(tool) }));
  const engine = config.engines.length
    ? h("select", { id: "agent-engine" }, config.engines.map((e) => h("option", { value: e, selected: e === value("engine", config.defaultEngine) }, e)))
    : null;
  const maxTurns = h("input", { type: "number", id: "agent-max-turns", value: String(value("maxTurns", 10)) });
  const maxTokens = h("input", { type: "number", id: "agent-max-tokens", value: String(value("maxTokens", 100000)) });
  const button = h("button", { type: "submit", id: "save-agent" }, agent ? "Save" : "Create agent");
  const form = h("form", { class: "card", id: "agent-form" },
    h("label", { for: "agent-name" }, "Name"), name,
    h("label", { for: "agent-description" }, "Description"), description,
    h("label", { for: "agent-system-prompt" }, "System prompt"), systemPrompt,
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "agent-model" }, "Model"), model),
      engine ? h("div", {}, h("label", { for: "agent-engine" }, "Engine"), engine) : null,
      h("div", {}, h("label", { for: "agent-max-turns" }, "Max turns"), maxTurns),
      h("div", {}, h("label", { for: "agent-max-tokens" }, "Max tokens per task"), maxTokens)),
    h("label", {}, "Tools"), h("div", {}, tools.map((box) => h("label", { class: "inline" }, box, box.value))),
    slot, button);
  form.addEventListener("submit", action(button, slot, async () => {
    const body = {
      name: name.value, description: description.value, systemPrompt: systemPrompt.value, model: model.value,
      tools: tools.filter((box) => box.checked).map((box) => box.value),
      maxTurns: Number(maxTurns.value), maxTokens: Number(maxTokens.value),
    };
    if (engine) body.engine = engine.value;
    const saved = agent
      ? await api(`/api/agents/${agent.id}`, { method: "PATCH", body })
      : await api("/api/agents", { method: "POST", body });
    const target = `#/agents/${saved.id}`;
    if (location.hash === target) slot.replaceChildren(h("p", { class: "note", id: "saved" }, "Saved."));
    else location.hash = target;
  }, { name, description, systemPrompt, model, maxTurns, maxTokens, ...(engine ? { engine } : {}) }));
  const chat = agent ? h("button", { type: "button", class: "secondary", id: "chat-with-agent" }, "Start a conversation") : null;
  const chatSlot = errorSlot();
  if (chat) {
    chat.addEventListener("click", action(chat, chatSlot, async () => {
      const conversation = await api("/api/conversations", { method: "POST", body: { agentId: agent.id, title: agent.name } });
      location.hash = `#/conversations/${conversation.id}`;
    }));
  }
  view(h("h1", {}, agent ? `Agent ${agent.name}` : "New agent"), form, chat, chatSlot);
}
