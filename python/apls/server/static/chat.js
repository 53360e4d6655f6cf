// The chat page's logic: send the conversation to /v1/chat/completions, stream the reply (SSE),
// show the server's figures (tokens/s, and with APLS tau and acceptance).
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];
let controller = null;

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value || localStorage.getItem("apls-api-key");
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("messages").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function showFigures(f, usage, seconds) {
  const parts = [];
  if (usage) parts.push(`${usage.completion_tokens} tokens`);
  if (f) parts.push(`${f.tokens_per_second.toFixed(1)} tok/s`);
  else if (usage && seconds > 0) parts.push(`${(usage.completion_tokens / seconds).toFixed(1)} tok/s`);
  if (f && f.drafted_tokens > 0) parts.push(`τ ${f.tau.toFixed(2)} (acceptance ${f.acceptance.toFixed(2)})`);
  if (f) parts.push(`first token ${(f.time_to_first_token_s * 1000).toFixed(0)} ms`);
  $("stats").textContent = parts.join(" · ");
}

async function needKey(res) {
  if (res.status === 401) {
    $("key-label").hidden = false;
    return true;
  }
  return false;
}

async function loadModel() {
  const res = await fetch("/v1/models", { headers: headers() });
  if (await needKey(res)) { $("model").textContent = "API key required"; return; }
  const data = await res.json();
  $("model").textContent = data.data.map((m) => m.id).join(", ");
}

// Calls onData(json) for each SSE data line of a fetch response body; ends at [DONE].
async function readEvents(res, onData) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data:")) continue;  // comments (pings) and other fields
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        onData(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const out = addMessage("assistant", "");
  out.dataset.state = "streaming";
  $("send").hidden = true;
  $("stop").hidden = false;
  $("stats").textContent = "…";
  controller = new AbortController();
  const t0 = performance.now();
  let reply = "", figures = null, usage = null, chunks = 0;
  try {
    const body = {
      messages: history,
      stream: true,
      stream_options: { include_usage: true },
      temperature: Number($("temperature").value),
      max_tokens: Number($("max-tokens").value),
    };
    const res = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!res.ok) {
      await needKey(res);
      const err = await res.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || `HTTP ${res.status}`);
    }
    await readEvents(res, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      if (chunk.apls) figures = chunk.apls;
      const c = chunk.choices && chunk.choices[0];
      if (c && c.delta && c.delta.content) {
        reply += c.delta.content;
        out.textContent = reply;
        chunks += 1;
        const s = (performance.now() - t0) / 1000;
        $("stats").textContent = `${chunks} chunks · ${(chunks / s).toFixed(1)} chunks/s`;
        out.scrollIntoView({ block: "end" });
      }
    });
    showFigures(figures, usage, (performance.now() - t0) / 1000);
  } catch (e) {
    if (e.name !== "AbortError") {
      out.className = "msg error";
      out.textContent = (reply ? reply + "\n" : "") + "Error: " + e.message;
    }
  } finally {
    history.push({ role: "assistant", content: reply });
    out.dataset.state = "done";
    controller = null;
    $("send").hidden = false;
    $("stop").hidden = true;
  }
}

$("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("form").requestSubmit();
  }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("clear").addEventListener("click", () => {
  history.length = 0;
  $("messages").textContent = "";
  $("stats").textContent = "";
});
$("api-key").addEventListener("change", () => {
  localStorage.setItem("apls-api-key", $("api-key").value);
  loadModel();
});
loadModel();
