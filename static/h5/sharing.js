// Sharing, control hand-off, invites and calls/SMS through the handset, for the phone player.
// Everything here is advisory UI: the edge decides who controls, what the clipboard may carry
// and who sees telephony requests; the page only shows the state the edge sends on `control`.

export function installSharing({ $, state, sendControl }) {
  const bar = $("control-bar");
  const label = $("control-state");
  const requestBtn = $("request-control");
  const takeBtn = $("take-control");
  const releaseBtn = $("release-control");
  const requestsEl = $("control-requests");
  const viewersEl = $("viewers");
  const invitesEl = $("invites");
  const inviteForm = $("invite-form");
  const inviteLink = $("invite-link");
  const prompt = $("telephony");
  const notice = $("notice");
  const ownerOnly = document.querySelectorAll("[data-owner-only]");
  const share = (state.sharing = { control: null, telephony: [], handsetUrls: [], invites: [],
                                   lastInvite: null, clipboard: null, errors: [] });
  let noticeTimer = null;

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = !text;
    clearTimeout(noticeTimer);
    if (text) noticeTimer = setTimeout(() => { notice.hidden = true; }, 5000);
  }

  function button(text, onClick, attrs = {}) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    Object.assign(b.dataset, attrs);
    b.addEventListener("click", onClick);
    return b;
  }

  function renderState(s) {
    share.control = s;
    bar.hidden = false;
    const owner = s.role === "owner";
    label.textContent = s.inControl ? "You have control"
      : s.controllerName ? `${s.controllerName} has control` : "Nobody has control";
    const asked = s.requests.some((r) => r.session === s.you);
    if (!s.canControl) label.textContent += " · view only";
    if (asked) label.textContent += " · you asked for control";
    requestBtn.hidden = s.inControl || !s.canControl || owner || asked;
    takeBtn.hidden = s.inControl || !owner;
    releaseBtn.hidden = !s.inControl || owner;
    for (const el of ownerOnly) el.hidden = !owner;
    requestsEl.replaceChildren(...(s.inControl || owner ? s.requests : []).map((r) => {
      const li = document.createElement("li");
      li.textContent = `${r.name} asks for control `;
      li.append(button("Grant", () => sendControl({ type: "control/grant", session: r.session }),
                       { grant: r.name }),
                button("Refuse", () => sendControl({ type: "control/refuse", session: r.session }),
                       { refuse: r.name }));
      return li;
    }));
    viewersEl.replaceChildren(...(s.viewers || []).map((v) => {
      const li = document.createElement("li");
      li.textContent = `${v.name} (${v.role}${v.inControl ? ", in control" : ""}) `;
      if (v.session !== s.you) {
        li.append(button("Kick", () => sendControl({ type: "viewers/kick", session: v.session }),
                         { kick: v.name }));
      }
      return li;
    }));
  }

  function renderInvites(list) {
    share.invites = list;
    invitesEl.replaceChildren(...list.map((i) => {
      const li = document.createElement("li");
      const left = Math.max(0, Math.round(i.expiresAt - Date.now() / 1000));
      li.textContent = `${i.label} · ${i.kind} · ${i.uses}/${i.maxUses} used · `
        + (i.revoked ? "revoked" : `${Math.round(left / 60)} min left `);
      if (!i.revoked) {
        li.append(button("Revoke", () => sendControl({ type: "invites/revoke", id: i.id }),
                         { revoke: i.label }));
      }
      return li;
    }));
  }

  function askHandset(msg) {
    share.telephony.push(msg);
    const what = msg.kind === "dial" ? `call ${msg.number}` : `send an SMS to ${msg.number}`;
    $("telephony-text").textContent = `The cloud phone wants to ${what} from your phone.`
      + (msg.body ? `\n“${msg.body}”` : "");
    prompt.dataset.request = msg.id;
    prompt.hidden = false;
  }

  function answer(outcome) {
    const msg = share.telephony.find((m) => m.id === prompt.dataset.request);
    prompt.hidden = true;
    if (!msg) return;
    sendControl({ type: "telephony/answer", id: msg.id, outcome });
    if (outcome === "confirmed") {
      const url = msg.kind === "dial" ? `tel:${msg.number}`
        : `sms:${msg.number}?body=${encodeURIComponent(msg.body || "")}`;
      share.handsetUrls.push(url);
      const a = document.createElement("a");  // hands the URL to the handset's dialer / SMS app
      a.href = url;
      a.rel = "noopener";
      a.click();
    }
  }

  requestBtn.addEventListener("click", () => sendControl({ type: "control/request" }));
  takeBtn.addEventListener("click", () => sendControl({ type: "control/take" }));
  releaseBtn.addEventListener("click", () => sendControl({ type: "control/revoke" }));
  $("telephony-confirm").addEventListener("click", () => answer("confirmed"));
  $("telephony-refuse").addEventListener("click", () => answer("refused"));
  $("sharing").addEventListener("toggle", (e) => {
    if (e.target.open && share.control?.role === "owner") sendControl({ type: "invites/list" });
  });
  inviteForm.addEventListener("submit", (e) => {
    e.preventDefault();
    sendControl({
      type: "invites/create",
      kind: $("invite-kind").value,
      label: $("invite-label").value.trim(),
      ttlS: Math.round(Number($("invite-ttl").value) * 60),
      maxUses: Number($("invite-uses").value),
    });
  });
  $("paste-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sendControl({ type: "clipboard/set", text: $("paste-text").value });
  });

  return {
    onMessage(msg) {
      switch (msg.type) {
        case "control/state": renderState(msg); return true;
        case "control/refused": showNotice(`${msg.by} refused to hand over control`); return true;
        case "invites/created": {
          const url = `${location.origin}${msg.path}`;
          share.lastInvite = { ...msg, url };
          inviteLink.value = url;
          inviteLink.hidden = false;
          sendControl({ type: "invites/list" });
          return true;
        }
        case "invites/list": renderInvites(msg.invites); return true;
        case "telephony/request": askHandset(msg); return true;
        case "telephony/result":
          if (prompt.dataset.request === msg.id) prompt.hidden = true;
          if (msg.result === "timed-out") showNotice("The call/SMS request timed out");
          return true;
        case "guest/clipboard":
          share.clipboard = msg.text;
          navigator.clipboard?.writeText(msg.text).catch(() => {});
          return true;
        case "clipboard/ack":
          if (msg.ok) showNotice("Pasted into the phone");
          return true;
        case "error":
          share.errors.push(msg);
          showNotice(msg.message);
          return true;
      }
      return false;
    },
  };
}
