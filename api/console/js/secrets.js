// Secrets: the user's names, sizes and times (values are never shown: the API never
// returns them), a form to add or replace one, and delete.
import { api } from "./api.js";
import { action, errorSlot, h, showError, view, when } from "./ui.js";

export async function secretList() {
  const slot = errorSlot();
  const body = h("tbody");
  const name = h("input", { type: "text", id: "secret-name", required: true, pattern: "[A-Z_][A-Z0-9_]*", placeholder: "OPENAI_API_KEY", autocomplete: "off" });
  const value = h("input", { type: "password", id: "secret-value", required: true, autocomplete: "off" });
  const save = h("button", { type: "submit", id: "save-secret" }, "Save");
  const form = h("form", { id: "secret-form", class: "toolbar" },
    h("label", {}, "Name ", name), h("label", {}, "Value ", value), save);
  const load = async () => {
    const { secrets } = await api("/api/secrets");
    body.replaceChildren(...secrets.map((secret) => {
      const rowSlot = errorSlot();
      const remove = h("button", { type: "button", class: "danger delete" }, "Delete");
      const row = h("tr", { dataset: { name: secret.name } },
        h("td", {}, h("code", {}, secret.name)), h("td", {}, `${secret.size} bytes`),
        h("td", {}, when(secret.updatedAt)), h("td", {}, remove, rowSlot));
      remove.addEventListener("click", action(remove, rowSlot, async () => {
        if (!confirm(`Delete secret ${secret.name}?`)) return;
        await api(`/api/secrets/${secret.name}`, { method: "DELETE" });
        row.remove();
      }));
      return row;
    }));
    if (!secrets.length) body.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No secrets yet.")));
  };
  form.addEventListener("submit", action(save, slot, async () => {
    await api(`/api/secrets/${name.value}`, { method: "PUT", body: { value: value.value } });
    value.value = "";
    name.value = "";
    await load();
  }));
  view(h("h1", {}, "Secrets"),
    h("p", { class: "muted" }, "A task that names a secret gets it as an environment variable in its sandbox; its value is masked as *** in what the task reports, and never shown here."),
    form, slot,
    h("table", { id: "secrets" }, h("thead", {}, h("tr", {}, ["Name", "Size", "Updated", ""].map((t) => h("th", {}, t)))), body));
  try {
    await load();
  } catch (error) {
    showError(slot, error);
  }
}
