// The conversation pane: history, a reply streaming in, Stop, and resuming a reply after a reload.
import { ApiError } from "./api.js";
import { lastEventIdFor, readEvents } from "./sse.js";

const LIVE_KEY = "threadline.live";
const USAGE_KEY = "threadline.usage";
const RESUME_ATTEMPTS = 5;

// The reply being streamed in this tab, kept in sessionStorage so a reload can resume it.
export const live = {
  read() {
    try {
      return JSON.parse(sessionStorage.getItem(LIVE_KEY));
    } catch {
      return null;
    }
  },
  save(value) {
    sessionStorage.setItem(LIVE_KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(LIVE_KEY);
  },
};

function usages() {
  try {
    return JSON.parse(sessionStorage.getItem(USAGE_KEY)) ?? {};
  } catch {
    return {};
  }
}

function rememberUsage(runId, usage) {
  const all = usages();
  all[runId] = usage;
  sessionStorage.setItem(USAGE_KEY, JSON.stringify(all));
}

function describeUsage(usage) {
  if (!usage) return "";
  const how = usage.source === "measured" ? "" : " (estimated)";
  return `${usage.prompt_tokens} in · ${usage.completion_tokens} out · ${usage.total_tokens} tokens${how}`;
}

const STATUS_TEXT = {
  waiting: "Waiting for the first words…",
  streaming: "Writing…",
  completed: "",
  cancelled: "Stopped",
  failed: "Failed",
  timeout: "Timed out",
  interrupted: "Interrupted",
};

export class ChatView {
  constructor({ api, elements, onThread, onBusy, onError, onDone }) {
    this.api = api;
    this.onDone = onDone;
    this.el = elements;
    this.onThread = onThread;
    this.onBusy = onBusy;
    this.onError = onError;
    this.current = null; // {runId, threadId, text, lastEventId, view, controller}
  }

  clear() {
    this.el.messages.querySelectorAll(".message").forEach((node) => node.remove());
    this.el.empty.hidden = false;
  }

  renderHistory(messages) {
    this.clear();
    const known = usages();
    const unknown = [];
    for (const message of messages) {
      const view = this.append(message.role, message.content, message.status ?? null);
      if (message.role === "assistant") {
        view.node.dataset.runId = message.run_id ?? "";
        const usage = message.usage ?? known[message.run_id];
        view.setUsage(usage);
        if (!usage && message.run_id && message.status !== "streaming") unknown.push({ runId: message.run_id, view });
        if (message.error) view.setError(message.error);
      }
    }
    this.fillUsage(unknown.slice(-20));
    return messages;
  }

  // Replies this tab did not stream: their usage is on their run (`GET /runs/{id}`).
  async fillUsage(pending) {
    await Promise.all(
      pending.map(async ({ runId, view }) => {
        try {
          const run = await this.api.json(`/runs/${runId}`);
          if (!run.usage) return;
          view.setUsage(run.usage);
          rememberUsage(runId, run.usage);
        } catch {
          // Usage is a nicety here; the reply itself is already shown.
        }
      }),
    );
  }

  append(role, text, status) {
    this.el.empty.hidden = true;
    const node = document.createElement("article");
    node.className = `message ${role}`;
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    const body = document.createElement("div");
    body.className = "text";
    body.textContent = text;
    bubble.append(body);
    const meta = document.createElement("footer");
    meta.className = "meta";
    const statusLabel = document.createElement("span");
    statusLabel.className = "status";
    const usageLabel = document.createElement("span");
    usageLabel.className = "usage";
    meta.append(statusLabel, usageLabel);
    node.append(bubble, meta);
    this.el.messages.append(node);
    const view = {
      node,
      setText: (value) => {
        body.textContent = value;
        this.scroll();
      },
      setStatus: (value) => {
        node.dataset.status = value ?? "";
        statusLabel.textContent = STATUS_TEXT[value] ?? value ?? "";
      },
      setUsage: (usage) => {
        usageLabel.textContent = describeUsage(usage);
      },
      setError: (value) => {
        let error = bubble.querySelector(".inline-error");
        if (!error) {
          error = document.createElement("p");
          error.className = "inline-error";
          bubble.append(error);
        }
        error.textContent = value;
      },
    };
    view.setStatus(role === "assistant" ? status : null);
    this.scroll();
    return view;
  }

  scroll() {
    this.el.messages.scrollTop = this.el.messages.scrollHeight;
  }

  get busy() {
    return this.current !== null;
  }

  async send(text, threadId) {
    const userView = this.append("user", text, null);
    const view = this.append("assistant", "", "waiting");
    const body = { message: text, client_message_id: crypto.randomUUID() };
    if (threadId) body.thread_id = threadId;
    this.begin({ runId: null, threadId, text: "", lastEventId: 0, view });
    try {
      const response = await this.api.fetch("/chat/stream", {
        method: "POST",
        body,
        signal: this.current.controller.signal,
      });
      await this.follow(response);
    } catch (error) {
      if (this.current?.runId) return this.recover(error);
      view.node.remove();
      userView.node.classList.add("unsent");
      this.end();
      throw error;
    }
  }

  // Continue a reply this tab (or another) was receiving: from the text it already has.
  async resume({ runId, threadId, text, view }) {
    this.begin({ runId, threadId, text, lastEventId: lastEventIdFor(text), view });
    view.setText(text);
    view.setStatus("streaming");
    try {
      await this.reconnect();
    } catch (error) {
      this.recover(error);
    }
  }

  async stop() {
    const runId = this.current?.runId;
    if (!runId) return;
    this.el.stop.disabled = true;
    try {
      await this.api.json(`/runs/${runId}/cancel`, { method: "POST" });
    } catch (error) {
      this.onError(error);
    } finally {
      this.el.stop.disabled = false;
    }
  }

  begin(state) {
    this.current = { ...state, controller: new AbortController() };
    this.onBusy(true);
  }

  end() {
    this.current = null;
    live.clear();
    this.onBusy(false);
  }

  async reconnect() {
    const { runId, lastEventId, controller } = this.current;
    const response = await this.api.fetch(`/runs/${runId}/stream?last_event_id=${lastEventId}`, {
      signal: controller.signal,
    });
    await this.follow(response);
  }

  async follow(response) {
    for (let attempt = 0; ; attempt += 1) {
      for await (const { id, event } of readEvents(response)) {
        if (this.apply(id, event)) return;
      }
      // The connection ended before `done`: the run goes on without us, so pick it up again.
      if (attempt >= RESUME_ATTEMPTS || !this.current?.runId) break;
      await new Promise((resolve) => setTimeout(resolve, 500 * (attempt + 1)));
      const { runId, lastEventId, controller } = this.current;
      response = await this.api.fetch(`/runs/${runId}/stream?last_event_id=${lastEventId}`, {
        signal: controller.signal,
      });
    }
    throw new ApiError(0, { detail: "The stream broke off; reload to see the rest of the reply." });
  }

  // One event; true once the run is over.
  apply(id, event) {
    const state = this.current;
    if (id) state.lastEventId = id;
    switch (event.type) {
      case "start":
        state.runId = event.run_id;
        state.view.node.dataset.runId = event.run_id;
        if (state.threadId !== event.thread_id) {
          state.threadId = event.thread_id;
          this.onThread(event.thread_id);
        }
        break;
      case "token":
        state.text += event.content;
        state.view.setText(state.text);
        state.view.setStatus("streaming");
        break;
      case "usage":
        state.view.setUsage(event.usage);
        rememberUsage(state.runId, event.usage);
        break;
      case "error":
        state.view.setError(event.message);
        break;
      case "done":
        state.view.setStatus(event.status);
        if (event.usage) state.view.setUsage(event.usage);
        this.end();
        this.onDone?.(state.threadId);
        return true;
      default:
        break;
    }
    live.save({ runId: state.runId, threadId: state.threadId, text: state.text, lastEventId: state.lastEventId });
    return false;
  }

  recover(error) {
    if (error.name === "AbortError") return;
    this.current?.view.setStatus("interrupted");
    this.end();
    this.onError(error);
  }

  // Leave the reply to run on the server (switching threads); its thread resumes it when reopened.
  abandon() {
    this.current?.controller.abort();
    this.end();
  }
}
