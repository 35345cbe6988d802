// Signing in, in each AUTH_MODE the API announces (GET /api/config):
// - dev: a user name, sent as X-User-Id;
// - apikey: a pasted key, sent as a Bearer credential and kept in sessionStorage only
//   (gone when the tab closes; never in localStorage or a cookie);
// - firebase: Google sign-in through the Firebase JS SDK (vendored, loaded only in this
//   mode), whose current ID token is sent as a Bearer credential.
import { api, useCredentials } from "./api.js";
import { action, errorBox, errorSlot, h, showError, view } from "./ui.js";

const STORED = "console.credentials";
let firebase = null; // {sdk, auth} once loaded

function stored() {
  try {
    return JSON.parse(sessionStorage.getItem(STORED));
  } catch {
    return null;
  }
}

function headersFor(credential) {
  if (credential.mode === "dev") return async () => ({ "X-User-Id": credential.user });
  if (credential.mode === "apikey") return async () => ({ Authorization: `Bearer ${credential.key}` });
  return async () => {
    const user = firebase && firebase.auth.currentUser;
    return user ? { Authorization: `Bearer ${await user.getIdToken()}` } : {};
  };
}

/** Who is signed in, as shown in the header. */
export function describe(credential) {
  if (credential.mode === "dev") return `${credential.user} (dev)`;
  if (credential.mode === "apikey") return `API key ${credential.key.slice(0, 12)}…`;
  const user = firebase.auth.currentUser;
  return user.email || user.displayName || user.uid;
}

async function loadFirebase(config) {
  if (firebase) return firebase;
  const sdk = await import(new URL("../vendor/firebase.js", import.meta.url).href);
  const app = sdk.initializeApp(config.firebase);
  // Session persistence, like the API key: the sign-in lasts as long as the tab.
  const auth = sdk.initializeAuth(app, {
    persistence: sdk.browserSessionPersistence,
    popupRedirectResolver: sdk.browserPopupRedirectResolver,
  });
  await auth.authStateReady();
  firebase = { sdk, auth };
  return firebase;
}

/** Try `credential` against the API (GET /api/usage); keep it if the API accepts it. */
async function adopt(credential) {
  useCredentials(headersFor(credential));
  await api("/api/usage");
  if (credential.mode !== "firebase") sessionStorage.setItem(STORED, JSON.stringify(credential));
  return credential;
}

/** The signed-in credential, or null: from this tab's session, or Firebase's. */
export async function restore(config) {
  const saved = stored();
  if (saved && config.authModes.includes(saved.mode)) {
    useCredentials(headersFor(saved));
    return saved;
  }
  if (config.authModes.includes("firebase") && config.firebase) {
    const { auth } = await loadFirebase(config);
    if (auth.currentUser) {
      const credential = { mode: "firebase" };
      useCredentials(headersFor(credential));
      return credential;
    }
  }
  return null;
}

export async function signOut() {
  sessionStorage.removeItem(STORED);
  if (firebase && firebase.auth.currentUser) await firebase.sdk.signOut(firebase.auth);
  useCredentials(async () => ({}));
}

/** The sign-in page: one form per mode the API accepts, under `why` (an error that
 * ended the last session), if any. Resolves when signed in. */
export function signInView(config, why = null) {
  return new Promise((resolve) => {
    const forms = [];
    const done = (credential) => resolve(credential);
    if (config.authModes.includes("dev")) forms.push(devForm(done));
    if (config.authModes.includes("firebase")) forms.push(firebaseForm(config, done));
    if (config.authModes.includes("apikey")) forms.push(apiKeyForm(done));
    view(h("div", { class: "signin" }, h("h1", {}, "Sign in"), why ? errorBox(why) : null, ...forms));
  });
}

function devForm(done) {
  const user = h("input", { type: "text", id: "dev-user", name: "user", autocomplete: "username", required: true, placeholder: "alice" });
  const slot = errorSlot();
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "card", id: "dev-sign-in" },
    h("p", { class: "note" }, "Development mode: the user name is sent as X-User-Id, unchecked."),
    h("label", { for: "dev-user" }, "User name"), user, slot, button);
  form.addEventListener("submit", action(button, slot, async () => done(await adopt({ mode: "dev", user: user.value.trim() }))));
  return form;
}

function apiKeyForm(done) {
  const key = h("input", { type: "password", id: "api-key", name: "key", autocomplete: "off", required: true, placeholder: "ak_…" });
  const slot = errorSlot();
  const button = h("button", { type: "submit" }, "Sign in with the key");
  const form = h("form", { class: "card", id: "api-key-sign-in" },
    h("label", { for: "api-key" }, "API key"), key,
    h("p", { class: "note" }, "Kept in this tab's session storage only; closing the tab forgets it."),
    slot, button);
  form.addEventListener("submit", action(button, slot, async () => done(await adopt({ mode: "apikey", key: key.value.trim() }))));
  return form;
}

function firebaseForm(config, done) {
  const slot = errorSlot();
  const button = h("button", { type: "button", id: "google-sign-in" }, "Sign in with Google");
  const card = h("div", { class: "card", id: "firebase-sign-in" },
    h("p", { class: "note" }, `Google account, through Firebase project ${config.firebase ? config.firebase.projectId : "(not configured)"}.`),
    slot, button);
  if (!config.firebase) {
    button.disabled = true;
    showError(slot, { message: "This deployment accepts Firebase ID tokens but has no FIREBASE_WEB_CONFIG, so the console cannot offer Google sign-in.", code: "firebase_not_configured" });
    return card;
  }
  button.addEventListener("click", action(button, slot, async () => {
    const { sdk, auth } = await loadFirebase(config);
    await sdk.signInWithPopup(auth, new sdk.GoogleAuthProvider());
    done(await adopt({ mode: "firebase" }));
  }));
  return card;
}
