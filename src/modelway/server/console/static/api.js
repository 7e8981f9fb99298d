// The console's only way to the gateway: the admin API and /v1, with the signed-in key.
const KEY = "mw.key";

export class ApiError extends Error {
  constructor(status, message, code) { super(message); this.status = status; this.code = code; }
}

export function key() { return sessionStorage.getItem(KEY); }
export function setKey(value) { value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY); }

function headers(extra = {}) {
  return { Authorization: `Bearer ${key()}`, ...extra };
}

async function fail(res) {
  let message = `${res.status} ${res.statusText}`, code;
  try {
    const body = await res.json();
    const err = body.error || body;
    message = err.message || message;
    code = err.code || err.type;
  } catch { /* not JSON */ }
  if (res.status === 401) window.dispatchEvent(new Event("mw:signed-out"));
  throw new ApiError(res.status, message, code);
}

export async function get(path, params) {
  const qs = params ? "?" + new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null)) : "";
  const res = await fetch(path + qs, { headers: headers() });
  if (!res.ok) await fail(res);
  return res.json();
}

export async function getText(path, params) {
  const qs = params ? "?" + new URLSearchParams(params) : "";
  const res = await fetch(path + qs, { headers: headers() });
  if (!res.ok) await fail(res);
  return res.text();
}

export async function send(method, path, body) {
  const res = await fetch(path, {
    method, headers: headers({ "Content-Type": "application/json" }), body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) await fail(res);
  return res.status === 204 ? null : res.json();
}

// POST a streamed chat completion; onDelta(text) for each piece; resolves with {usage, ttft, total}
export async function streamChat(body, onDelta, signal) {
  const start = performance.now();
  const res = await fetch("/v1/chat/completions", {
    method: "POST", signal, headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  if (!res.ok) await fail(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", usage = null, ttft = null, model = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(chunk.error.status || 500, chunk.error.message || "stream error", chunk.error.code);
        model = chunk.model || model;
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          const text = choice.delta && choice.delta.content;
          if (text) { if (ttft === null) ttft = performance.now() - start; onDelta(text); }
        }
      }
    }
  }
  return { usage, ttft, total: performance.now() - start, model };
}
