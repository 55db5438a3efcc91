// Account + password, then the SMS code unless this browser is trusted; then back to `next`.
import { api, ApiError, setCsrf } from "./account.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let challenge = null;

function destination(user) {
  const next = params.get("next") || "";
  // Only paths on this site: never an open redirect.
  if (next.startsWith("/") && !next.startsWith("//")) return next;
  return user && user.role === "admin" ? "/h5/admin.html" : "/h5/phones.html";
}

function done(reply) {
  setCsrf(reply.csrf_token);
  sessionStorage.setItem("cloudphone.userLogin", "1");  // the player fetches its own tokens
  window.cloudphoneLogin = { state: "session", user: reply.user };
  location.replace(destination(reply.user));
}

$("password-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  $("login").disabled = true;
  try {
    const reply = await api("POST", "/auth/login", { account: $("account").value, password: $("password").value });
    if (reply.status === "session") return done(reply);
    challenge = reply.challenge;
    $("sent-to").textContent = `We sent a 6-digit code to ${reply.sent_to}. It is valid for 5 minutes.`;
    $("password-form").hidden = true;
    $("code-form").hidden = false;
    window.cloudphoneLogin = { state: "challenge" };
    $("code").focus();
  } catch (err) {
    $("login-error").textContent = err instanceof ApiError ? err.message : "network error, try again";
  } finally {
    $("login").disabled = false;
  }
});

$("code-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("code-error").textContent = "";
  $("verify").disabled = true;
  try {
    done(await api("POST", "/auth/verify", { challenge, code: $("code").value.trim(), trust_browser: $("trust").checked }));
  } catch (err) {
    $("code-error").textContent = err instanceof ApiError ? err.message : "network error, try again";
    if (err instanceof ApiError && err.code !== "wrong_code") {
      // Expired, used up or locked: start again from the password.
      $("code-form").hidden = true;
      $("password-form").hidden = false;
      $("login-error").textContent = err.message;
    }
  } finally {
    $("verify").disabled = false;
  }
});
