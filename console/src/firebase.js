// The part of the Firebase JS SDK the console uses: Google sign-in and ID tokens.
export { initializeApp } from "firebase/app";
export {
  GoogleAuthProvider,
  browserPopupRedirectResolver,
  browserSessionPersistence,
  initializeAuth,
  onIdTokenChanged,
  signInWithPopup,
  signOut,
} from "firebase/auth";
