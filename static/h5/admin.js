// The plain admin console: balance, buying, phones and their actions, orgs, users, ledger.
// Everything goes through /api/v1 with the administrator's login session.
import { api, ApiError, el, logout, whoami } from "./account.js";

const $ = (id) => document.getElementById(id);
const money = (cents) => (cents / 100).toFixed(2);
const when = (ts) => (ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) : "");
let regions = [];
let users = [];
let orgs = [];

function fail(err) { $("error").textContent = err instanceof ApiError ? `${err.code}: ${err.message}` : String(err); }
async function act(fn) { $("error").textContent = ""; try { await fn(); await refresh(); } catch (err) { fail(err); } }

function option(value, text, selected) { return el("option", { value, selected: selected || undefined }, text); }

function fillZones() {
  const region = regions.find((r) => r.name === $("buy-region").value);
  $("buy-zone").replaceChildren(...(region ? region.zones : []).map((z) => option(z.name, z.served ? z.name : `${z.name} (other node)`)));
}

async function loadCatalogue() {
  regions = (await api("GET", "/regions")).regions;
  $("buy-region").replaceChildren(...regions.map((r) => option(r.name, r.title)));
  fillZones();
  const flavors = (await api("GET", "/flavors")).flavors;
  $("buy-flavor").replaceChildren(...flavors.map((f) => option(f.name,
    `${f.name} ${f.width}×${f.height}@${f.fps} · ${money(f.prices.on_demand_cents_per_hour)}/h · ${money(f.prices.month_cents)}/month`)));
}

function phoneRow(p) {
  const b = p.billing;
  const billing = b.mode === "prepaid" ? `prepaid until ${when(b.expires_at)}` : `on demand · ${b.metered_seconds}s · ${money(b.billed_cents)}`;
  const owner = users.find((u) => u.id === p.user_id);
  const actions = [];
  const live = p.state !== "released" && p.state !== "creating";
  if (live) {
    for (const a of ["start", "stop", "restart"]) actions.push(el("button", { onclick: () => act(() => api("POST", `/phones/${p.id}/${a}`)) }, a));
    if (b.mode === "prepaid") {
      actions.push(el("button", { onclick: () => act(() => api("POST", `/phones/${p.id}/renew`, { period: "month", duration: 1 })) }, "renew 1 month"));
      actions.push(el("button", { onclick: () => confirm(`Unsubscribe ${p.name}?`) && act(() => api("POST", `/phones/${p.id}/unsubscribe`)) }, "unsubscribe"));
    } else {
      actions.push(el("button", { onclick: () => confirm(`Delete ${p.name}?`) && act(() => api("DELETE", `/phones/${p.id}`)) }, "delete"));
    }
    if (owner) actions.push(el("button", { onclick: () => act(() => api("DELETE", `/phones/${p.id}/assign`)) }, "unassign"));
    else {
      const pick = el("select", { "aria-label": `assign ${p.name}` }, option("", "assign to…"), ...users.map((u) => option(String(u.id), u.login)));
      pick.addEventListener("change", () => pick.value && act(() => api("POST", `/phones/${p.id}/assign`, { user_id: Number(pick.value) })));
      actions.push(pick);
    }
  }
  return el("tr", { "data-id": p.id }, el("td", {}, p.name), el("td", {}, el("span", { class: `state ${p.state}` }, p.state)),
    el("td", {}, p.zone), el("td", {}, billing), el("td", {}, owner ? owner.login : ""), el("td", {}, el("div", { class: "row" }, actions)));
}

async function refresh() {
  const [account, phones, orgList, userList, ledger] = await Promise.all([
    api("GET", "/account"), api("GET", "/phones"), api("GET", "/orgs"), api("GET", "/users"), api("GET", "/ledger?limit=50"),
  ]);
  orgs = orgList.orgs; users = userList.users;
  $("balance").textContent = money(account.balance_cents);
  $("phones").replaceChildren(...phones.phones.filter((p) => p.state !== "released").map(phoneRow));
  const orgName = (id) => (orgs.find((o) => o.id === id) || {}).name || "";
  $("org-parent").replaceChildren(option("", "(top level)"), ...orgs.map((o) => option(String(o.id), o.name)));
  $("user-org").replaceChildren(...orgs.map((o) => option(String(o.id), o.name)));
  $("orgs").replaceChildren(...orgs.map((o) => el("tr", {}, el("td", {}, o.name), el("td", { class: "dim" }, o.parent_id ? `in ${orgName(o.parent_id)}` : ""),
    el("td", {}, el("div", { class: "row" },
      el("button", { onclick: () => { const name = prompt("New name", o.name); if (name) act(() => api("PATCH", `/orgs/${o.id}`, { name })); } }, "rename"),
      el("button", { onclick: () => act(() => api("DELETE", `/orgs/${o.id}`)) }, "delete"))))));
  $("users").replaceChildren(...users.map((u) => {
    const move = el("select", { "aria-label": `move ${u.login}` }, ...orgs.map((o) => option(String(o.id), o.name, o.id === u.org_id)));
    move.addEventListener("change", () => act(() => api("PATCH", `/users/${u.id}`, { org_id: Number(move.value) })));
    return el("tr", {}, el("td", {}, u.login), el("td", {}, u.name), el("td", {}, u.mobile), el("td", {}, u.role),
      el("td", {}, `${u.phones} phone(s)`), el("td", {}, move), el("td", {}, el("div", { class: "row" },
        el("button", { onclick: () => act(() => api("DELETE", `/users/${u.id}/devices`)) }, "forget browsers"),
        el("button", { onclick: () => confirm(`Delete ${u.login}?`) && act(() => api("DELETE", `/users/${u.id}`)) }, "delete"))));
  }));
  $("ledger").replaceChildren(...ledger.entries.map((e) => el("tr", {}, el("td", {}, when(e.at)), el("td", {}, e.kind),
    el("td", {}, money(e.amount_cents)), el("td", {}, money(e.balance_after_cents)), el("td", {}, e.phone_id || ""), el("td", {}, e.memo))));
}

$("buy-region").addEventListener("change", fillZones);
$("recharge-form").addEventListener("submit", (e) => { e.preventDefault();
  act(() => api("POST", "/account/recharge", { amount_cents: Math.round(Number($("recharge-amount").value) * 100) })); });
$("buy-form").addEventListener("submit", (e) => { e.preventDefault();
  const mode = $("buy-mode").value;
  const billing = mode === "prepaid" ? { mode, period: $("buy-period").value, duration: Number($("buy-duration").value) } : { mode };
  act(() => api("POST", "/orders", { region: $("buy-region").value, zone: $("buy-zone").value, flavor: $("buy-flavor").value,
    name: $("buy-name").value, count: Number($("buy-count").value), billing })); });
$("org-form").addEventListener("submit", (e) => { e.preventDefault();
  const parent = $("org-parent").value;
  act(() => api("POST", "/orgs", { name: $("org-name").value, parent_id: parent ? Number(parent) : null })); });
$("user-form").addEventListener("submit", (e) => { e.preventDefault();
  act(() => api("POST", "/users", { login: $("user-login").value, name: $("user-name").value, mobile: $("user-mobile").value,
    password: $("user-password").value, org_id: Number($("user-org").value), role: $("user-role").value })); });
$("logout").addEventListener("click", logout);

(async () => {
  try {
    const me = await whoami();
    if (me.user.role !== "admin") { location.replace("/h5/phones.html"); return; }
    $("who").textContent = me.user.login;
    await loadCatalogue();
    await refresh();
    window.cloudphoneAdmin = { ready: true };
  } catch (err) { if (err.status !== 401) fail(err); }
})();
