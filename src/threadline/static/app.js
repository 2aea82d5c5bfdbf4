// The playground: sign in with a token, pick or start a thread, chat. Plain ES modules, no build step.
import { Api, ApiError, tokenSubject } from "./api.js";
import { ChatView, live } from "./chat.js";
import { Sidebar, titleOf } from "./threads.js";

const TOKEN_KEY = "threadline.token";
const THREAD_KEY = "threadline.thread";
const $ = (id) => document.getElementById(id);

const el = {
  loginView: $("login-view"), loginForm: $("login-form"), tokenInput: $("token-input"), loginError: $("login-error"),
  appView: $("app-view"), sidebar: $("sidebar"), scrim: $("scrim"), menu: $("menu"),
  threadList: $("thread-list"), newThread: $("new-thread"), userLabel: $("user-label"), signOut: $("sign-out"),
  searchForm: $("search-form"), searchInput: $("search-input"), searchResults: $("search-results"),
  title: $("thread-title"), status: $("thread-status"), banner: $("banner"), bannerText: $("banner-text"),
  bannerClose: $("banner-close"), messages: $("messages"), empty: $("empty"),
  composer: $("composer"), input: $("message-input"), send: $("send"), stop: $("stop"),
};

let api = null;
let sidebar = null;
let chat = null;
let threadId = null;

function showBanner(error) {
  el.bannerText.textContent = error instanceof ApiError ? error.advice : String(error.message ?? error);
  el.banner.hidden = false;
}

function hideBanner() {
  el.banner.hidden = true;
}

function showLogin(message) {
  chat?.abandon();
  el.appView.hidden = true;
  el.loginView.hidden = false;
  el.loginError.hidden = !message;
  el.loginError.textContent = message ?? "";
  el.tokenInput.focus();
}

function setBusy(busy) {
  el.send.hidden = busy;
  el.stop.hidden = !busy;
  el.input.placeholder = busy ? "Wait for the reply, or stop it" : "Message Threadline";
}

function setDrawer(open) {
  el.sidebar.classList.toggle("open", open);
  el.scrim.hidden = !open;
}

function showThreadHeader() {
  const thread = threadId ? sidebar.find(threadId) : null;
  el.title.textContent = thread ? titleOf(thread) : threadId ? "Conversation" : "New conversation";
  el.status.hidden = !thread?.status || thread.status === "active";
  el.status.textContent = thread?.status ?? "";
  el.status.className = `badge ${thread?.status ?? ""}`;
}

function rememberThread(id) {
  threadId = id;
  if (id) sessionStorage.setItem(THREAD_KEY, id);
  else sessionStorage.removeItem(THREAD_KEY);
}

async function openThread(id, { resuming = null } = {}) {
  chat.abandon();
  hideBanner();
  setDrawer(false);
  rememberThread(id);
  if (!id) {
    chat.clear();
    showThreadHeader();
    return;
  }
  const history = await api.json(`/chat/history?thread_id=${id}&limit=500`);
  chat.renderHistory(history.messages);
  sidebar.render(id);
  showThreadHeader();
  const streaming = history.messages.findLast((m) => m.role === "assistant" && m.status === "streaming");
  if (!streaming) return;
  // The saved text may lag the stream: keep whichever of ours and the server's is longer.
  const ours = resuming?.runId === streaming.run_id ? resuming.text : "";
  const text = ours.length > streaming.content.length ? ours : streaming.content;
  const view = [...el.messages.querySelectorAll(".message.assistant")].at(-1);
  const handle = chat.append("assistant", text, "streaming");
  view.replaceWith(handle.node);
  chat.resume({ runId: streaming.run_id, threadId: id, text, view: handle });
}

async function startSession(token) {
  api = new Api({ token, onUnauthorized: () => signOut("Your token was refused. Paste a fresh one.") });
  let sessions;
  try {
    sessions = await api.json("/chat/sessions");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    return showLogin(error instanceof ApiError ? error.advice : String(error));
  }
  localStorage.setItem(TOKEN_KEY, token);
  el.userLabel.textContent = tokenSubject(token) ?? sessions.user_id;
  sidebar = new Sidebar({ api, elements: el, onOpen: (id) => openThread(id).catch(showBanner) });
  chat = new ChatView({
    api,
    elements: el,
    onThread: (id) => {
      rememberThread(id);
      sidebar.load(id).then(showThreadHeader).catch(showBanner);
    },
    onBusy: setBusy,
    onError: showBanner,
    // A thread's title is written in the background after its first reply: look again shortly.
    onDone: () => setTimeout(() => sidebar.load(threadId).then(showThreadHeader).catch(() => {}), 1500),
  });
  const resuming = live.read();
  const first = resuming?.threadId ?? sessionStorage.getItem(THREAD_KEY) ?? sessions.thread_id ?? null;
  await Promise.all([sidebar.load(first), sidebar.enableSearch()]).catch(showBanner);
  await openThread(first, { resuming }).catch(showBanner);
  // Shown only now: a message typed earlier would race the thread being opened.
  el.loginView.hidden = true;
  el.appView.hidden = false;
  el.input.focus();
}

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(THREAD_KEY);
  live.clear();
  showLogin(message);
}

async function newThread() {
  hideBanner();
  try {
    const created = await api.optional("/threads", null, { method: "POST", body: {} });
    await openThread(created?.id ?? null);
    if (created) await sidebar.load(created.id);
    else showBanner(new Error("This server cannot create threads yet: your message continues your latest active thread."));
  } catch (error) {
    showBanner(error);
  }
  el.input.focus();
}

async function submit() {
  const text = el.input.value;
  if (!text.trim() || chat.busy) return;
  hideBanner();
  el.input.value = "";
  autosize();
  try {
    await chat.send(text, threadId);
  } catch (error) {
    if (error.name === "AbortError") return;
    el.input.value = text;
    autosize();
    showBanner(error);
  }
}

function autosize() {
  el.input.style.height = "auto";
  el.input.style.height = `${Math.min(el.input.scrollHeight, 240)}px`;
}

el.loginForm.addEventListener("submit", (event) => {
  event.preventDefault();
  startSession(el.tokenInput.value.trim());
});
el.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});
el.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
});
el.input.addEventListener("input", autosize);
el.stop.addEventListener("click", () => chat.stop());
el.newThread.addEventListener("click", newThread);
el.signOut.addEventListener("click", () => signOut());
el.bannerClose.addEventListener("click", hideBanner);
el.menu.addEventListener("click", () => setDrawer(!el.sidebar.classList.contains("open")));
el.scrim.addEventListener("click", () => setDrawer(false));
el.searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  sidebar.search(el.searchInput.value).catch(showBanner);
});

const saved = localStorage.getItem(TOKEN_KEY);
if (saved) startSession(saved);
else showLogin();
