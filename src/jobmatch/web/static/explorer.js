// jobmatch explorer: the pages' buttons call the /v1 API with the signed-in key's cookie (same origin) and the
// X-Jobmatch-UI header the server requires of cookie-authenticated writes (see jobmatch.serve.auth).
"use strict";

async function api(method, path, body) {
  const response = await fetch(path, {
    method, credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-Jobmatch-UI": "1"},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const why = Array.isArray(data) ? data.map(e => `${e.field}: ${e.message}`).join("; ") : (data && data.error);
    throw new Error(`${response.status}: ${why || response.statusText}`);
  }
  return data;
}

function say(text) {
  const status = document.getElementById("status");
  if (status) status.textContent = text;
}

function feedbackId() {
  return "ui-" + (crypto.randomUUID ? crypto.randomUUID() : Date.now() + "-" + Math.random().toString(16).slice(2));
}

async function sendFeedback(button) {
  const table = document.getElementById("candidates");
  const row = button.closest("tr");
  const project = Number(table.dataset.project), channel = table.dataset.channel;
  const member = Number(row.dataset.member), feedback = button.dataset.feedback;
  const before = [...table.tBodies[0].rows].indexOf(row) + 1;
  button.disabled = true;
  try {
    await api("POST", "/v1/feedback", [{feedback_id: feedbackId(), project_id: project, member_id: member,
                                        ts: new Date().toISOString(), channel, feedback}]);
    const rows = [...table.tBodies[0].rows];
    const ranked = await api("POST", `/v1/projects/${project}/candidates:rank`,
                             {candidates: rows.map(r => Number(r.dataset.member)), channel});
    const byMember = new Map(rows.map(r => [Number(r.dataset.member), r]));
    ranked.items.forEach((item, i) => {
      const r = byMember.get(item.member_id);
      r.querySelector(".rank").textContent = i + 1;
      r.querySelector(".score").textContent = item.score.toFixed(4);
      r.classList.remove("moved");
      table.tBodies[0].appendChild(r);
    });
    const fb = row.querySelector(".fb");
    fb.textContent = fb.textContent ? `${fb.textContent}, ${feedback}` : feedback;
    const after = [...table.tBodies[0].rows].indexOf(row) + 1;
    row.classList.add("moved");
    say(`member ${member}: ${feedback} sent; re-ranked, ${before === after ? "stays at" : "moved from " + before + " to"} ${after}.`);
  } catch (e) {
    say(`member ${member}: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

async function rollback(button) {
  const group = button.dataset.group;
  if (!confirm(`Make the previous version of ${group} current?`)) return;
  try {
    const out = await api("POST", `/v1/models/${encodeURIComponent(group)}:rollback`);
    say(`${group}: version ${out.version} is current (it restores the previous one).`);
    setTimeout(() => location.reload(), 600);
  } catch (e) {
    say(`${group}: ${e.message}`);
  }
}

document.addEventListener("click", event => {
  const button = event.target.closest("button");
  if (!button) return;
  if (button.classList.contains("feedback")) sendFeedback(button);
  else if (button.classList.contains("rollback")) rollback(button);
});
