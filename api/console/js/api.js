// The console's only way to the platform: the public API, same origin, with the
// caller's credentials (see auth.js). Every failure becomes an ApiError carrying the
// API's own {"error": {"code", "message"}} and, for 429/503, Retry-After.

let credentials = async () => ({});

/** auth.js tells us how to sign each request (an async function giving headers). */
export function useCredentials(headersFn) {
  credentials = headersFn;
}

let unauthenticated = null;

/** Called once a signed-in caller's credential is refused (401): main.js signs in again. */
export function onUnauthenticated(handler) {
  unauthenticated = handler;
}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; // seconds, or null
  }
}

async function failure(response) {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch {
    // not JSON (a proxy's page): keep the status line
  }
  const retry = response.headers.get("Retry-After");
  return new ApiError(response.status, code, message, retry === null ? null : Number(retry));
}

/** fetch() with the caller's credentials, a JSON `body` or `raw` bytes; throws ApiError unless 2xx. */
export async function request(path, { method = "GET", body, raw, headers = {}, signal } = {}) {
  const init = { method, headers: { ...(await credentials()), ...headers }, signal };
  if (raw !== undefined) {
    init.headers["Content-Type"] = "application/octet-stream";
    init.body = raw;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network_error", `The API could not be reached (${error.message}).`, null);
  }
  if (!response.ok) {
    const error = await failure(response);
    if (error.status === 401 && unauthenticated) unauthenticated(error);
    throw error;
  }
  return response;
}

/** A JSON call: the parsed body (null for 204). */
export async function api(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

/**
 * Follow a task's events as Server-Sent Events until the stream ends with the task.
 *
 * EventSource cannot send an Authorization header, so the stream is read with fetch
 * and parsed here (the framing of the HTML standard's "server-sent events": fields
 * `id`, `event`, `data`, blank line ends an event, `:` a comment). After a drop the
 * stream is opened again with Last-Event-ID, so no event is lost or repeated.
 * `onEvent` gets each {seq, type, data, at}; resolves when the task has ended.
 */
export async function followEvents(taskId, { after = 0, onEvent, onError, signal, isDone }) {
  let last = after;
  let failures = 0;
  while (!signal.aborted) {
    try {
      const response = await request(`/api/tasks/${taskId}/events`, {
        headers: { Accept: "text/event-stream", ...(last ? { "Last-Event-ID": String(last) } : {}) },
        signal,
      });
      await readStream(response.body, (event) => {
        last = event.seq;
        failures = 0;
        onEvent(event);
      });
      // The server ends the stream when the task has ended, or after a while: ask.
      if (await isDone()) return;
    } catch (error) {
      if (signal.aborted || error.name === "AbortError") return;
      failures += 1;
      if (onError) onError(error);
      if (error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 429) return;
      const wait = error.retryAfter ? error.retryAfter * 1000 : Math.min(500 * 2 ** failures, 8000);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

async function readStream(body, deliver) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = parseBlock(block);
      if (event) deliver(event);
    }
  }
}

function parseBlock(block) {
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return null; // a keep-alive comment
  return JSON.parse(data.join("\n"));
}

/** Fetch a file with the caller's credentials and hand it to the browser as a download. */
export async function download(path, filename) {
  const blob = await (await request(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** A file's bytes as an object URL (an image shown inline), or null if the route is absent. */
export async function blobUrl(path) {
  const blob = await (await request(path)).blob();
  return URL.createObjectURL(blob);
}
