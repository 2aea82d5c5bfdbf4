import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport } from "ai";
import { useEffect, useMemo, useState } from "react";

// A Threadline JWT: `threadline token alice`, put in .env.local as VITE_THREADLINE_TOKEN=...
const TOKEN = import.meta.env.VITE_THREADLINE_TOKEN;
const headers = { Authorization: `Bearer ${TOKEN}` };

// The chat id is the Threadline thread id (a UUID is used as it is), kept so a reload finds the thread.
function chatId() {
  let id = localStorage.getItem("threadline.chat");
  if (!id) {
    id = crypto.randomUUID();
    localStorage.setItem("threadline.chat", id);
  }
  return id;
}

// Threadline's history as UI messages; a reply still streaming is left out: `resume` replays it whole.
async function loadHistory(threadId) {
  const response = await fetch(`/chat/history?thread_id=${threadId}&limit=200`, { headers });
  if (response.status === 404) return [];
  if (!response.ok) throw new Error(`history: HTTP ${response.status}`);
  const { messages } = await response.json();
  return messages
    .filter((m) => m.status !== "streaming")
    .map((m) => ({ id: m.id, role: m.role, parts: [{ type: "text", text: m.content }] }));
}

export default function App() {
  const [id] = useState(chatId);
  const [history, setHistory] = useState(null);
  const [failure, setFailure] = useState(null);
  useEffect(() => {
    loadHistory(id).then(setHistory, setFailure);
  }, [id]);
  if (!TOKEN) return <main className="error">Set VITE_THREADLINE_TOKEN in .env.local (see README.md).</main>;
  if (failure) return <main className="error">{failure.message}</main>;
  if (history === null) return <main>Loading…</main>;
  return <Chat id={id} initialMessages={history} />;
}

function Chat({ id, initialMessages }) {
  const transport = useMemo(() => new DefaultChatTransport({ api: "/ai-sdk/chat", headers }), []);
  // `resume: true`: on mount, GET /ai-sdk/chat/{id}/stream picks up a reply that is still running.
  const { messages, sendMessage, status, error } = useChat({ id, messages: initialMessages, transport, resume: true });
  const [input, setInput] = useState("");
  const busy = status === "submitted" || status === "streaming";

  // Stop on the server, so the run ends `cancelled` for every client, and the stream closes with `abort`.
  async function stop() {
    const runId = messages.at(-1)?.metadata?.runId;
    if (runId) await fetch(`/runs/${runId}/cancel`, { method: "POST", headers });
  }

  return (
    <main>
      {messages.map((message) => (
        <div key={message.id} className={`message ${message.role}`}>
          {message.parts.map((part, i) => (part.type === "text" ? <span key={i}>{part.text}</span> : null))}
          {message.metadata?.usage && (
            <div className="usage">
              {message.metadata.usage.inputTokens} in · {message.metadata.usage.outputTokens} out
            </div>
          )}
        </div>
      ))}
      {error && <div className="error">{error.message}</div>}
      <form
        onSubmit={(event) => {
          event.preventDefault();
          if (!input.trim()) return;
          sendMessage({ text: input });
          setInput("");
        }}
      >
        <input value={input} onChange={(event) => setInput(event.target.value)} placeholder="Say something" />
        {busy ? (
          <button type="button" onClick={stop}>Stop</button>
        ) : (
          <button type="submit">Send</button>
        )}
      </form>
    </main>
  );
}
