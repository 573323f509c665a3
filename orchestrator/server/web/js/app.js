// The app's shell: the key (asked on first visit, kept in this browser, asked again when the
// server refuses it), the pages by URL hash, and the count of pending approvals.

import {ApiError, api, keyStore} from './api.js';
import {renderAgents} from './agents.js';
import {renderApprovals} from './approvals.js';
import {ChatPage} from './chat.js';
import {renderKnowledge} from './knowledge.js';
import {renderRun, renderRuns} from './runs.js';

const COUNT_EVERY_MS = 10000;
const dialog = document.getElementById('key-dialog');
const keyInput = document.getElementById('key-input');
const keyError = document.getElementById('key-error');
const ctx = {me: null, pageSignal: null, refreshCount};
let chat = null;
let pageAbort = null;

function askForKey(message = '') {
  keyError.hidden = !message;
  keyError.textContent = message;
  keyInput.value = '';
  if (!dialog.open) dialog.showModal();
  keyInput.focus();
}

async function signIn(key) {
  keyStore.set(key);
  try {
    ctx.me = await api('/api/me');
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      keyStore.clear();
      askForKey(`That key was refused (${error.message}). Check it and enter it again.`);
    } else {
      askForKey(`Could not check the key: ${error.message}`);
    }
    return false;
  }
  dialog.close();
  document.getElementById('who').textContent = `${ctx.me.name} · ${ctx.me.tenant}`;
  document.getElementById('who').title = `scopes: ${ctx.me.scopes.join(', ')}`;
  chat = null;  // a new key may be another tenant: start the chat afresh
  route();
  refreshCount();
  return true;
}

document.getElementById('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (key) signIn(key);
});
document.getElementById('change-key').addEventListener('click', () => askForKey());
document.getElementById('sign-out').addEventListener('click', () => {
  keyStore.clear();
  ctx.me = null;
  chat = null;
  document.getElementById('who').textContent = '';
  for (const page of document.querySelectorAll('.page')) page.replaceChildren();
  askForKey('Signed out. Enter a key to sign in again.');
});
dialog.addEventListener('cancel', (event) => {
  if (!ctx.me) event.preventDefault();  // nothing works without a key
});
window.addEventListener('auth-required', (event) => {
  if (ctx.me) askForKey(`The server refused the key (${event.detail}). Enter a valid key.`);
});

async function refreshCount() {
  if (!ctx.me) return;
  const badge = document.getElementById('approval-count');
  try {
    const {approvals} = await api('/api/approvals');
    badge.hidden = approvals.length === 0;
    badge.textContent = String(approvals.length);
  } catch { /* the count is a hint; pages show their own errors */ }
}

/** A %-escaped part of the address; a malformed escape (a cut link) is kept as typed, so the
 * page says in words that no run or conversation has that id instead of going blank. */
function decodedOrAsTyped(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function route() {
  if (!ctx.me) return;
  const [path, queryText] = (location.hash.slice(1) || '/chat').split('?');
  const [, page = 'chat', ...rest] = path.split('/');
  const param = rest.length ? decodedOrAsTyped(rest.join('/')) : null;
  const query = new URLSearchParams(queryText || '');
  const known = ['chat', 'approvals', 'runs', 'agents', 'knowledge'].includes(page);
  const name = known ? page : 'chat';
  for (const section of document.querySelectorAll('.page')) {
    section.hidden = section.dataset.page !== name;
  }
  for (const link of document.querySelectorAll('.nav a')) {
    if (link.dataset.page === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (pageAbort) pageAbort.abort();
  pageAbort = new AbortController();
  ctx.pageSignal = pageAbort.signal;
  const root = document.getElementById(`page-${name}`);
  const titles = {chat: 'Chat', approvals: 'Approvals', runs: 'Runs', agents: 'Agents',
    knowledge: 'Knowledge'};
  document.title = `${titles[name]} · Orchestrator`;
  if (name === 'chat') {
    if (!chat) chat = new ChatPage(root, ctx);
    chat.show(param);
  } else if (name === 'approvals') renderApprovals(root, ctx);
  else if (name === 'runs' && param) renderRun(root, ctx, param);
  else if (name === 'runs') renderRuns(root, ctx, query);
  else if (name === 'agents') renderAgents(root, ctx);
  else renderKnowledge(root, ctx);
}

window.addEventListener('hashchange', route);
setInterval(() => {
  if (document.visibilityState === 'visible') refreshCount();
}, COUNT_EVERY_MS);

const saved = keyStore.get();
if (saved) signIn(saved);
else askForKey();
