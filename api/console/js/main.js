// The console's entry: read the deployment's public config, sign in, then route
// by the URL's fragment (#/tasks, #/tasks/ID, #/run, #/agents, #/conversations/ID…).
import { api, onUnauthenticated } from "./api.js";
import { agentForm, agentList } from "./agents.js";
import { describe, restore, signInView, signOut } from "./auth.js";
import { conversationList, conversationPage } from "./conversations.js";
import { secretList } from "./secrets.js";
import { keyList } from "./keys.js";
import { runForm, taskList, taskPage } from "./tasks.js";
import { errorBox, view } from "./ui.js";
import { refreshUsage } from "./usage.js";

let config;
let current = new AbortController(); // ends the previous page's streams

const ROUTES = [
  [/^#\/tasks\/(\w+)$/, (m, signal) => taskPage(m[1], signal)],
  [/^#\/tasks(?:\?(.*))?$/, (m, signal) => taskList(new URLSearchParams(m[1] || ""), signal)],
  [/^#\/run$/, () => runForm(config)],
  [/^#\/agents\/new$/, () => agentForm(config, null)],
  [/^#\/agents\/(\w+)$/, (m) => agentForm(config, m[1])],
  [/^#\/agents$/, () => agentList()],
  [/^#\/conversations\/(\w+)$/, (m, signal) => conversationPage(m[1], signal)],
  [/^#\/conversations$/, () => conversationList()],
  [/^#\/secrets$/, () => secretList()],
  [/^#\/keys$/, () => keyList()],
];

async function route() {
  current.abort();
  current = new AbortController();
  const hash = location.hash || "#/tasks";
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", hash.startsWith(link.getAttribute("href")));
  }
  for (const [pattern, render] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      refreshUsage();
      // A task's or a conversation's page resolves only when its stream ends.
      await render(match, current.signal);
      return;
    }
  }
  location.hash = "#/tasks";
}

function signedIn(credential) {
  setSignedIn(true);
  document.getElementById("who-name").textContent = describe(credential);
  window.addEventListener("hashchange", route);
  // A credential refused later (a revoked key, an expired session): sign in again.
  onUnauthenticated(async (error) => {
    onUnauthenticated(null);
    current.abort();
    window.removeEventListener("hashchange", route);
    await signOut();
    setSignedIn(false);
    signedIn(await signInView(config, error));
  });
  route();
}

function setSignedIn(shown) {
  for (const id of ["nav", "who", "usage"]) document.getElementById(id).hidden = !shown;
}

async function start() {
  try {
    config = await api("/api/config");
  } catch (error) {
    view(errorBox(error));
    return;
  }
  document.body.dataset.authModes = config.authModes.join(",");
  document.getElementById("sign-out").addEventListener("click", async () => {
    await signOut();
    location.hash = "";
    location.reload();
  });
  const credential = (await restore(config)) || (await signInView(config));
  signedIn(credential);
}

start();
