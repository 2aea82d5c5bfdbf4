// Threadline's /ai-sdk/chat parsed by the real `ai` package: its DefaultChatTransport, its
// readUIMessageStream, and its Chat (the class under React's useChat) sending and resuming.
// Run by tests/e2e/test_ai_sdk_node.py, which starts Threadline and sets THREADLINE_URL and
// THREADLINE_TOKEN, and picks one test per upstream behaviour with --test-name-pattern.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { AbstractChat, DefaultChatTransport, readUIMessageStream } from "ai";

const BASE = process.env.THREADLINE_URL;
const TOKEN = process.env.THREADLINE_TOKEN;
const headers = { Authorization: `Bearer ${TOKEN}` };

function transport() {
  return new DefaultChatTransport({ api: `${BASE}/ai-sdk/chat`, headers });
}

function userMessage(text) {
  return { id: randomUUID(), role: "user", parts: [{ type: "text", text }] };
}

function textOf(message) {
  return message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
}

// The state a UI framework keeps for a Chat (React keeps it in hooks); a plain array suffices here.
class ArrayState {
  status = "ready";
  error = undefined;
  messages = [];
  pushMessage = (message) => { this.messages = [...this.messages, message]; };
  popMessage = () => { this.messages = this.messages.slice(0, -1); };
  replaceMessage = (index, message) => {
    this.messages = this.messages.map((m, i) => (i === index ? message : m));
  };
  snapshot = (thing) => structuredClone(thing);
}

class NodeChat extends AbstractChat {
  constructor(id) {
    super({ id, transport: transport(), state: new ArrayState() });
  }
}

async function until(predicate, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test("a reply streams into one assistant UI message with usage in its metadata", async () => {
  const text = "hello from node";
  const stream = await transport().sendMessages({
    chatId: `node-${randomUUID()}`,
    messages: [userMessage(text)],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  let last;
  for await (const message of readUIMessageStream({ stream, terminateOnError: true })) last = message;
  assert.equal(last.role, "assistant");
  assert.equal(textOf(last), `Echo: ${text}`);
  assert.match(last.id, /^[0-9a-f-]{36}$/);
  assert.equal(last.metadata.status, "completed");
  assert.ok(last.metadata.usage.totalTokens > 0);
  assert.equal(last.metadata.usage.source, "measured");
});

test("Chat sends, and a second Chat on the same id resumes the running reply whole", async () => {
  const chatId = `node-${randomUUID()}`;
  const text = "one two three four five six seven eight nine ten eleven twelve";
  const sender = new NodeChat(chatId);
  const sending = sender.sendMessage({ text });
  await until(() => sender.status === "streaming" && sender.messages.length === 2, "the first text");

  // A page reload: a new Chat with the same id and no messages asks the resume route.
  const reloaded = new NodeChat(chatId);
  await reloaded.resumeStream();
  await sending;
  assert.equal(sender.status, "ready");
  assert.equal(textOf(sender.messages.at(-1)), `Echo: ${text}`);
  assert.equal(reloaded.status, "ready");
  assert.equal(reloaded.messages.length, 1);
  assert.equal(textOf(reloaded.messages[0]), `Echo: ${text}`);
  assert.equal(reloaded.messages[0].id, sender.messages.at(-1).id);

  // Nothing runs now: the route answers 204 and the Chat stays as it is.
  const idle = new NodeChat(chatId);
  await idle.resumeStream();
  assert.equal(idle.status, "ready");
  assert.deepEqual(idle.messages, []);
});

test("a reply cancelled through /runs/{id}/cancel ends with an abort part", async () => {
  const stream = await transport().sendMessages({
    chatId: `node-${randomUUID()}`,
    messages: [userMessage("a long answer please, with many many words in it")],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  const types = [];
  let runId;
  let cancelled = false;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    types.push(value.type);
    if (value.type === "start") runId = value.messageMetadata.runId;
    if (value.type === "text-delta" && !cancelled) {
      cancelled = true;
      const response = await fetch(`${BASE}/runs/${runId}/cancel`, { method: "POST", headers });
      assert.equal(response.status, 200);
    }
  }
  assert.equal(types[0], "start");
  assert.equal(types.at(-1), "abort");
  assert.ok(!types.includes("finish"));
  assert.ok(types.includes("text-end"));
});

test("Chat.regenerate() replaces the last reply with a new one", async () => {
  const chat = new NodeChat(`node-${randomUUID()}`);
  await chat.sendMessage({ text: "answer twice" });
  const first = chat.messages.at(-1);
  await chat.regenerate();
  assert.equal(chat.status, "ready");
  assert.equal(chat.messages.length, 2);
  const second = chat.messages.at(-1);
  assert.equal(textOf(second), "Echo: answer twice");
  assert.notEqual(second.metadata.runId, first.metadata.runId);
});

test("an upstream failure puts the Chat in its error state with the reason", async () => {
  const chat = new NodeChat(`node-${randomUUID()}`);
  await chat.sendMessage({ text: "this will fail" });
  assert.equal(chat.status, "error");
  assert.ok(chat.error instanceof Error);
  assert.ok(chat.error.message.length > 0);
});
