// The user's phones: how many are bound, which one is selected, its state; "Enter" opens it.
import { api, ApiError, el, logout, whoami } from "./account.js";

const $ = (id) => document.getElementById(id);
const LAST = "cloudphone.lastPhone";
let phones = [];
let selected = localStorage.getItem(LAST);

function render() {
  $("count").textContent = String(phones.length);
  $("empty").hidden = phones.length > 0;
  if (!phones.some((p) => p.id === selected)) selected = (phones.find((p) => p.usable) || phones[0] || {}).id;
  const list = $("phones");
  list.replaceChildren(...phones.map((p) => el("li", {
    role: "option", "aria-selected": String(p.id === selected), "data-id": p.id,
    onclick: () => { selected = p.id; render(); },
    ondblclick: () => { selected = p.id; enter(); },
  }, el("span", { class: "name" }, p.name), el("span", { class: `state ${p.state}` }, p.state))));
  const current = phones.find((p) => p.id === selected);
  $("enter").disabled = !current || !current.usable;
  window.cloudphonePhones = { count: phones.length, selected };
}

async function enter() {
  const current = phones.find((p) => p.id === selected);
  if (!current) return;
  $("error").textContent = "";
  try {
    const ticket = await api("POST", `/me/phones/${encodeURIComponent(current.id)}/connect`);
    localStorage.setItem(LAST, current.id);
    sessionStorage.setItem("cloudphone.token", ticket.token);
    location.assign(ticket.player);
  } catch (err) {
    $("error").textContent = err instanceof ApiError ? err.message : "network error";
  }
}

async function load() {
  const me = await whoami();
  $("who").textContent = me.user.name;
  phones = (await api("GET", "/me/phones")).phones;
  render();
}

async function loadDevices() {
  const { devices } = await api("GET", "/me/devices");
  $("devices").replaceChildren(...devices.map((d) => el("li", { "data-device": d.id },
    el("span", { class: "name" }, d.label || "a browser"),
    el("button", { type: "button", onclick: async () => { await api("DELETE", `/me/devices/${d.id}`); loadDevices(); } }, "Forget"))));
}

$("devices-box").addEventListener("toggle", () => { if ($("devices-box").open) loadDevices().catch(() => {}); });
$("enter").addEventListener("click", enter);
$("logout").addEventListener("click", logout);
load().catch((err) => { if (err.status !== 401) $("error").textContent = err.message; });
setInterval(() => { if (!document.hidden) api("GET", "/me/phones").then((r) => { phones = r.phones; render(); }).catch(() => {}); }, 15000);
