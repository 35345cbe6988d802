// Conversations: the list, and a chat view where the agent's reply appears as it is
// written (`assistant_delta` events; `assistant` events where an engine sends only
// those), tool calls and their results folded, and the workspace's files.
import { ApiError, api, followEvents } from "./api.js";
import { fileList } from "./files.js";
import {
  TERMINAL, action, enterSubmits, errorSlot, h, markdown, tableNote, showError, statusBadge, view, when,
} from "./ui.js";
import { refreshUsage } from "./usage.js";

export async function conversationList() {
  const slot = errorSlot();
  const body = h("tbody");
  const foot = tableNote(4, "Loading conversations…");
  const agent = h("select", { id: "conversation-agent" }, h("option", { value: "" }, "default agent settings"));
  const title = h("input", { type: "text", id: "conversation-title", placeholder: "Title" });
  const createSlot = errorSlot();
  const create = h("button", { type: "submit", id: "new-conversation" }, "New conversation");
  const form = h("form", { class: "card toolbar" }, h("label", {}, "Agent", agent), h("label", {}, "Title", title), create, createSlot);
  form.addEventListener("submit", action(create, createSlot, async () => {
    const conversation = await api("/api/conversations", { method: "POST", body: { title: title.value, ...(agent.value ? { agentId: agent.value } : {}) } });
    location.hash = `#/conversations/${conversation.id}`;
  }));
  view(h("h1", {}, "Conversations"), form, slot,
    h("div", { class: "table-wrap" }, h("table", { id: "conversations", class: "stack" },
      h("thead", {}, h("tr", {}, ["Title", "Agent", "Updated", ""].map((t) => h("th", {}, t)))), body, foot)));
  try {
    const [{ conversations }, { agents }] = await Promise.all([api("/api/conversations"), api("/api/agents")]);
    const names = Object.fromEntries(agents.map((a) => [a.id, a.name]));
    agent.append(...agents.map((a) => h("option", { value: a.id }, a.name)));
    body.replaceChildren(...conversations.map((c) => h("tr", { dataset: { id: c.id } },
      h("td", {}, h("a", { href: `#/conversations/${c.id}` }, c.title || "(untitled)")),
      h("td", {}, c.agentId ? names[c.agentId] || c.agentId : "—"), h("td", {}, when(c.updatedAt)),
      h("td", {}, c.activeTaskId ? "answering…" : ""))));
    foot.note();
    if (!conversations.length) foot.note("No conversations yet: pick an agent above and start one.");
  } catch (error) {
    showError(slot, error);
  }
}

async function loadConversation(id) {
  const first = await api(`/api/conversations/${id}?limit=100`);
  const messages = [...first.messages];
  for (let after = first.nextMessagesAfter; after; ) {
    const page = await api(`/api/conversations/${id}?limit=100&after=${encodeURIComponent(after)}`);
    messages.push(...page.messages);
    after = page.nextMessagesAfter;
  }
  return { ...first, messages };
}

/** One tool call, folded: its name and input, and its result once it comes. */
function toolFold(call) {
  const result = h("pre", { class: "tool-result" }, "…");
  const fold = h("details", { class: "tool", dataset: { tool: call.name, callId: call.id || "" } },
    h("summary", {}, `Tool call: ${call.name}`), h("pre", { class: "tool-input" }, JSON.stringify(call.input, null, 2)), result);
  fold.result = result;
  return fold;
}

/** Folds of a past turn's tool calls, read from its task's events when opened. */
function pastTools(taskId) {
  const inner = h("div");
  const fold = h("details", { class: "tool past" }, h("summary", {}, "Tool calls"), inner);
  fold.addEventListener("toggle", async () => {
    if (!fold.open || inner.childElementCount) return;
    try {
      const { events } = await api(`/api/tasks/${taskId}/events?after=0`);
      const calls = events.filter((e) => e.type === "tool_call" || e.type === "tool_result");
      if (!calls.length) inner.append(h("p", { class: "muted" }, "No tool calls in this turn."));
      const folds = {};
      for (const event of calls) {
        if (event.type === "tool_call") inner.append((folds[event.data.id] = toolFold(event.data)));
        else if (folds[event.data.id]) folds[event.data.id].result.textContent = event.data.output;
      }
    } catch (error) {
      inner.append(h("p", { class: "error" }, error.message));
    }
  });
  return fold;
}

export async function conversationPage(id, signal) {
  const slot = errorSlot();
  view(h("h1", {}, "Conversation"), slot, h("p", { class: "muted loading" }, "Loading the conversation…"));
  let conversation;
  try {
    conversation = await loadConversation(id);
  } catch (error) {
    showError(slot, error);
    return;
  }
  const chat = h("div", { class: "chat", id: "chat" });
  const message = h("textarea", { id: "message", rows: 3, placeholder: "Message the agent (Enter sends, Shift+Enter for a new line)" });
  const send = h("button", { type: "submit", id: "send", title: "Enter" }, "Send");
  const reason = h("p", { class: "note", id: "send-reason" });
  const sendSlot = errorSlot();
  const cancelTurn = h("button", { type: "button", class: "danger", id: "cancel-turn", hidden: true }, "Stop the turn");
  const form = h("form", { class: "card", id: "message-form" }, message, reason, sendSlot, send, " ", cancelTurn);
  const files = h("div", { id: "workspace-files" });
  const remove = h("button", { type: "button", class: "danger", id: "delete-conversation" }, "Delete conversation");
  const removeSlot = errorSlot();
  remove.addEventListener("click", action(remove, removeSlot, async () => {
    if (!confirm("Delete this conversation and its messages?")) return;
    await api(`/api/conversations/${id}`, { method: "DELETE" });
    location.hash = "#/conversations";
  }));
  view(h("h1", {}, conversation.title || "Conversation"),
    h("section", {}, chat), form,
    h("section", {}, h("h2", {}, "Workspace files"), files),
    remove, removeSlot, slot);

  enterSubmits(message, form);
  if (!conversation.messages.length) chat.append(h("p", { class: "muted empty" }, "No messages yet: say something to the agent below."));
  for (const m of conversation.messages) {
    chat.append(messageBubble(m.role, m.content, m.createdAt));
    if (m.role === "assistant" && m.taskId) chat.append(pastTools(m.taskId));
  }
  refreshFiles(id, files);

  const busy = (taskId) => {
    send.disabled = Boolean(taskId);
    cancelTurn.hidden = !taskId;
    reason.textContent = taskId ? "The agent is answering; you can send your next message when this turn has ended." : "";
  };
  cancelTurn.addEventListener("click", action(cancelTurn, sendSlot, async () => {
    await api(`/api/tasks/${conversation.activeTaskId}/cancel`, { method: "POST" });
  }));

  async function watchTurn(taskId) {
    conversation.activeTaskId = taskId;
    busy(taskId);
    let bubble = null; // the assistant message being written
    let written = ""; // its Markdown so far
    const status = h("div", { class: "muted turn-status" }, "Turn ", statusBadge("queued"), h("span", { class: "spinner", "aria-hidden": "true" }));
    chat.append(status);
    const open = () => {
      if (!bubble) {
        chat.insertBefore((bubble = h("div", { class: "message assistant live markdown", dataset: { role: "assistant" } })), status);
        written = "";
      }
      return bubble;
    };
    await followEvents(taskId, {
      signal,
      onError: (error) => showError(sendSlot, error),
      onEvent: (event) => {
        const data = event.data || {};
        if (event.type === "assistant_delta") {
          open();
          written += typeof data === "string" ? data : data.text || "";
          bubble.replaceChildren(markdown(written));
        } else if (event.type === "assistant") {
          // The whole text of one model message: it replaces what its deltas wrote.
          open().replaceChildren(markdown(data.text || ""));
          bubble = null;
        } else if (event.type === "tool_call") {
          bubble = null;
          chat.insertBefore(toolFold(data), status);
        } else if (event.type === "tool_result") {
          const fold = [...chat.querySelectorAll("details.tool")].find((d) => d.dataset.callId === (data.id || ""));
          if (fold) fold.result.textContent = data.output;
        } else if (event.type === "status") {
          // The API's status changes carry `status`; an engine's own carry `state`
          // (Claude Code's {"state": "engine_started", ...}).
          if (data.status) status.replaceChildren("Turn ", statusBadge(data.status), TERMINAL.has(data.status) ? null : h("span", { class: "spinner", "aria-hidden": "true" }));
          else if (data.state) status.dataset.engineState = data.state;
        }
      },
      isDone: async () => TERMINAL.has((await api(`/api/tasks/${taskId}`, { signal })).status),
    });
    if (signal.aborted) return;
    const task = await api(`/api/tasks/${taskId}`);
    status.replaceChildren("Turn ", statusBadge(task.status));
    if (task.error) showError(sendSlot, task.error);
    conversation.activeTaskId = null;
    busy(null);
    refreshFiles(id, files);
    refreshUsage();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = message.value.trim();
    if (!text) return;
    send.disabled = true;
    showError(sendSlot, null);
    let accepted;
    try {
      accepted = await api(`/api/conversations/${id}/messages`, { method: "POST", body: { message: text } });
    } catch (error) {
      send.disabled = false;
      showError(sendSlot, error);
      return;
    }
    message.value = "";
    const empty = chat.querySelector(".empty");
    if (empty) empty.remove();
    chat.append(messageBubble("user", accepted.message.content, accepted.message.createdAt));
    watchTurn(accepted.task.id).catch((error) => showError(sendSlot, error));
  });
  busy(conversation.activeTaskId);
  if (conversation.activeTaskId) watchTurn(conversation.activeTaskId).catch((error) => showError(sendSlot, error));
}

async function refreshFiles(id, slot) {
  try {
    const listing = await api(`/api/conversations/${id}/files`);
    slot.replaceChildren(fileList(`/api/conversations/${id}/files`, listing.files, listing.skipped));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      slot.replaceChildren(h("p", { class: "muted" }, "This deployment keeps no workspace files for conversations."));
    } else {
      slot.replaceChildren(h("div", { class: "error" }, error.message));
    }
  }
}

/** A message of the conversation: the agent's rendered from Markdown, the user's as text. */
function messageBubble(role, content, createdAt) {
  const title = createdAt ? when(createdAt) : undefined;
  if (role === "assistant") return markdown(content, { class: `message ${role}`, dataset: { role }, title });
  return h("div", { class: `message ${role}`, dataset: { role }, title }, content);
}
