// The sidebar: the caller's threads grouped by date with their statuses, and search over past messages.

const DAY = 24 * 60 * 60 * 1000;

function startOfToday() {
  const now = new Date();
  return new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
}

export function dateGroup(iso, today = startOfToday()) {
  const when = new Date(iso).getTime();
  if (Number.isNaN(when)) return "Older";
  if (when >= today) return "Today";
  if (when >= today - DAY) return "Yesterday";
  if (when >= today - 7 * DAY) return "Previous 7 days";
  if (when >= today - 30 * DAY) return "Previous 30 days";
  return "Older";
}

function lastActivity(thread) {
  return thread.last_activity_at ?? thread.last_activity ?? thread.updated_at ?? thread.created_at;
}

export function titleOf(thread) {
  return thread.title || thread.last_message?.content?.slice(0, 60) || "Untitled thread";
}

// A search snippet is escaped text with the matches in <mark>: copy its text and marks, nothing else.
function appendSnippet(into, snippet) {
  const parsed = new DOMParser().parseFromString(snippet, "text/html");
  for (const node of parsed.body.childNodes) {
    if (node.nodeName === "MARK") {
      const mark = document.createElement("mark");
      mark.textContent = node.textContent;
      into.append(mark);
    } else {
      into.append(node.textContent);
    }
  }
}

export class Sidebar {
  constructor({ api, elements, onOpen }) {
    this.api = api;
    this.el = elements;
    this.onOpen = onOpen;
    this.available = true;
    this.threads = [];
  }

  // GET /threads may not exist on this server yet: then the sidebar says so and lists the open thread.
  async load(currentId) {
    const page = await this.api.optional("/threads?per_page=50", null);
    this.available = page !== null;
    this.threads = page?.threads ?? [];
    this.render(currentId);
  }

  render(currentId) {
    const list = this.el.threadList;
    list.replaceChildren();
    if (!this.available) {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = "This server does not list threads yet. New messages go to your latest active thread.";
      list.append(note);
      return;
    }
    if (!this.threads.length) {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = "No threads yet. Your first message starts one.";
      list.append(note);
      return;
    }
    const groups = new Map();
    for (const thread of this.threads) {
      const name = dateGroup(lastActivity(thread));
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push(thread);
    }
    for (const [name, threads] of groups) {
      const heading = document.createElement("h3");
      heading.textContent = name;
      const items = document.createElement("ul");
      for (const thread of threads) items.append(this.item(thread, thread.id === currentId));
      list.append(heading, items);
    }
  }

  item(thread, current) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thread";
    button.dataset.threadId = thread.id;
    if (current) button.setAttribute("aria-current", "true");
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = titleOf(thread);
    button.append(title);
    if (thread.status && thread.status !== "active") {
      const badge = document.createElement("span");
      badge.className = `badge ${thread.status}`;
      badge.textContent = thread.status;
      button.append(badge);
    }
    button.addEventListener("click", () => this.onOpen(thread.id));
    li.append(button);
    return li;
  }

  find(id) {
    return this.threads.find((thread) => thread.id === id) ?? null;
  }

  // GET /search arrives with the memory work; until then the box stays hidden.
  async enableSearch() {
    const probe = await this.api.optional("/search?q=hello&limit=1", null).catch(() => null);
    this.el.searchForm.hidden = probe === null;
  }

  async search(query) {
    const box = this.el.searchResults;
    box.replaceChildren();
    if (!query.trim()) {
      box.hidden = true;
      return;
    }
    const body = await this.api.json(`/search?q=${encodeURIComponent(query)}&limit=10`);
    const hits = Array.isArray(body) ? body : (body.results ?? body.hits ?? body.items ?? []);
    box.hidden = false;
    const heading = document.createElement("h3");
    heading.textContent = hits.length ? `Messages matching “${query}”` : `Nothing matches “${query}”`;
    box.append(heading);
    for (const hit of hits) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "hit";
      const who = document.createElement("span");
      who.className = "role";
      who.textContent = hit.role === "assistant" ? "Reply" : "You";
      button.append(who, " ");
      appendSnippet(button, hit.snippet ?? hit.content ?? "");
      button.addEventListener("click", () => this.onOpen(hit.thread_id));
      box.append(button);
    }
  }
}
