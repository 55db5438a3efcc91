// Shared by the login, selection and admin pages: JSON calls to /api/v1 with the session's
// CSRF token, and the way back to the login page (returning here after) when a session ends.
const CSRF_KEY = "cloudphone.csrf";

export function csrf() { return sessionStorage.getItem(CSRF_KEY) || ""; }
export function setCsrf(token) { sessionStorage.setItem(CSRF_KEY, token); }

export function toLogin() {
  const here = location.pathname + location.search;
  location.replace(`/h5/login.html?next=${encodeURIComponent(here)}`);
}

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  const res = await fetch(`/api/v1${path}`, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401 && !path.startsWith("/auth/login") && !path.startsWith("/auth/verify")) {
    toLogin();  // the session expired: log in again and come back to this very page
    throw new ApiError(401, "unauthorized", "session expired");
  }
  if (!res.ok) {
    const err = data.error || {};
    throw new ApiError(res.status, err.code || "error", err.message || res.statusText);
  }
  return data;
}

/** Who is logged in (and refresh the CSRF token, which lives only as long as the tab). */
export async function whoami() {
  const me = await api("GET", "/auth/session");
  setCsrf(me.csrf_token);
  return me;
}

export async function logout() {
  try { await api("POST", "/auth/logout"); } catch (_) { /* already gone */ }
  sessionStorage.clear();
  location.replace("/h5/login.html");
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
