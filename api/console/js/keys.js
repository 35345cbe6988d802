// API keys (`/api/keys`): make a key for your scripts (shown once: the API keeps only
// its hash), see when each was last used, revoke one.
import { api } from "./api.js";
import { action, errorSlot, h, tableNote, showError, view, when } from "./ui.js";

export async function keyList() {
  const slot = errorSlot();
  const columns = ["Name", "Key", "Created", "Last used", ""];
  const body = h("tbody");
  const foot = tableNote(columns.length, "Loading keys…");
  const name = h("input", { type: "text", id: "key-name", placeholder: "laptop", maxlength: 100 });
  const createSlot = errorSlot();
  const created = h("div", { id: "new-key" });
  const create = h("button", { type: "submit", id: "create-key" }, "Create key");
  const form = h("form", { class: "card", id: "key-form" },
    h("label", { for: "key-name" }, "Name (what the key is for)"), name, createSlot, create, created);
  form.addEventListener("submit", action(create, createSlot, async () => {
    const key = await api("/api/keys", { method: "POST", body: { name: name.value } });
    name.value = "";
    const secret = h("code", { id: "new-key-secret" }, key.key);
    const copy = h("button", { type: "button", class: "secondary", id: "copy-key" }, "Copy");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(key.key);
        copy.textContent = "Copied";
      } catch {
        // No clipboard outside a secure context: select the key for a manual copy.
        getSelection().selectAllChildren(secret);
      }
    });
    created.replaceChildren(h("div", { class: "card shown-once" },
      h("p", {}, "Your new key, shown this once (the platform keeps only its hash):"), secret, " ", copy,
      h("p", { class: "note" }, "Use it as Authorization: Bearer <key>, or: agentplatform login --api-key <key>")));
    await refresh();
  }, { name }));
  view(h("h1", {}, "API keys"), form, slot,
    h("div", { class: "table-wrap" }, h("table", { id: "keys", class: "stack" },
      h("thead", {}, h("tr", {}, columns.map((t) => h("th", {}, t)))), body, foot)));

  async function refresh() {
    try {
      const { keys } = await api("/api/keys");
      body.replaceChildren(...keys.map(keyRow));
      foot.note(keys.length ? null : "No keys yet: create one above for your scripts and the CLI.");
    } catch (error) {
      showError(slot, error);
    }
  }

  function keyRow(key) {
    const rowSlot = errorSlot();
    const revoke = h("button", { type: "button", class: "danger revoke" }, "Revoke");
    revoke.addEventListener("click", action(revoke, rowSlot, async () => {
      if (!confirm(`Revoke key ${key.name || key.prefix}? Scripts using it stop working.`)) return;
      await api(`/api/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
      await refresh();
    }));
    return h("tr", { dataset: { id: key.id } },
      h("td", {}, key.name || h("span", { class: "muted" }, "(unnamed)")),
      h("td", { class: "id" }, `${key.prefix}…`),
      h("td", {}, when(key.createdAt)),
      h("td", {}, key.lastUsedAt ? when(key.lastUsedAt) : "never"),
      h("td", {}, revoke, rowSlot));
  }

  await refresh();
}
