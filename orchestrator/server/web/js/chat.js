// Chat with the supervisor: conversations (threads) and, per turn, the plan as a live graph
// and the answer as it is written.
//
// Why POST /v1/chat/completions with stream: true (read with fetch, since EventSource cannot
// send the Authorization header) rather than a background run and its event stream: the
// chat stream is the only one that carries the answer as the synthesizer writes it, and its
// progress comments come from the same run, in order, before each answer piece, so the graph
// and the text never disagree. The run store's event stream (run_follow.js) is used where the
// chat stream cannot reach: a run resumed by an approval, the plans of a conversation's
// earlier turns (GET /api/threads/{id}/history names each answer's run), and the runs page.
// The stream's first progress line, run_started, names the turn's run.

import {ApiError, api, enc, request, withQuery} from './api.js';
import {approvalCard, pendingByThread} from './approvals.js';
import {emptyState, errorBox, fill, h, statusPill} from './dom.js';
import {seconds, shortId, tokens, when} from './format.js';
import {PlanGraph} from './plan_graph.js';
import {followRun} from './run_follow.js';
import {sseEvents} from './sse.js';

const PROGRESS = 'orchestrator ';
const THREADS_SHOWN = 100;
const EXAMPLES = [
  'check web-1 health, check web-2 health, check web-3 health',
  'web-3 is down: find the root cause, reroute its traffic to a backup, alert the on-call team and log the incident',
  'planned failover for web-2',
];

function newThreadId() {
  return `web-${crypto.getRandomValues(new Uint32Array(2)).reduce(
    (text, n) => text + n.toString(16).padStart(8, '0'), '')}`;
}

export class ChatPage {
  constructor(root, ctx) {
    this.ctx = ctx;
    this.views = new Map();  // thread id -> its messages element, kept while the page lives
    this.busy = new Set();  // threads with a turn streaming
    this.fresh = new Set();  // threads started here that have no history to read yet
    this.threadInfo = new Map();  // thread id -> its entry in GET /api/threads
    this.paused = new Set();  // threads waiting for a decision: they take no message
    this.threadsLoaded = Promise.resolve();
    this.thread = null;
    this.threadList = h('ul', {class: 'thread-list', 'aria-label': 'Conversations'});
    this.title = h('h1', {class: 'chat-title'}, 'New conversation');
    this.messagesSlot = h('div', {class: 'messages-slot'});
    this.input = h('textarea', {id: 'chat-input', rows: 2, name: 'message', required: true,
      placeholder: 'Ask the supervisor, e.g. “check web-1 health, check web-2 health”',
      onkeydown: (event) => {
        if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          this.form.requestSubmit();
        }
      }});
    this.sendButton = h('button', {type: 'submit', class: 'primary'}, 'Send');
    this.form = h('form', {class: 'composer', onsubmit: (event) => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (text && !this.busy.has(this.thread) && !this.paused.has(this.thread)) {
        this.input.value = '';
        this.send(text);
      }
    }}, h('label', {for: 'chat-input', class: 'sr-only'}, 'Message to the supervisor'),
    this.input, this.sendButton);
    fill(root, h('div', {class: 'chat'},
      h('aside', {class: 'threads', 'aria-label': 'Conversations'},
        h('div', {class: 'threads-head'}, h('h2', {}, 'Conversations'),
          h('a', {class: 'button primary small', href: '#/chat/new'}, 'New')),
        this.threadList),
      h('div', {class: 'conversation'},
        h('div', {class: 'conversation-head'}, this.title,
          this.runsLink = h('a', {class: 'muted', hidden: true}, 'Runs of this conversation')),
        this.messagesSlot, this.form)));
  }

  /** Show `threadId` ('new' or null: a new conversation, or the one already open). */
  async show(threadId) {
    this.threadsLoaded = this.loadThreads();
    if (threadId === 'new' || (!threadId && !this.thread)) {
      const fresh = newThreadId();
      this.fresh.add(fresh);
      location.replace(`#/chat/${fresh}`);
      return;
    }
    if (!threadId) {
      location.replace(`#/chat/${enc(this.thread)}`);
      return;
    }
    if (threadId === this.thread) return;
    this.thread = threadId;
    this.title.textContent = threadId.startsWith('web-') ? 'Conversation' : threadId;
    this.runsLink.href = `#/runs?thread=${enc(threadId)}`;
    this.updateComposer();
    this.markCurrent();
    let view = this.views.get(threadId);
    if (!view) {
      view = h('ol', {class: 'messages', 'aria-label': 'Messages'});
      this.views.set(threadId, view);
      fill(this.messagesSlot, view);
      await this.loadHistory(threadId, view);
    } else {
      fill(this.messagesSlot, view);
    }
    this.input.focus();
  }

  updateComposer() {
    const busy = this.busy.has(this.thread);
    const paused = this.paused.has(this.thread);
    this.sendButton.disabled = busy || paused;
    this.sendButton.textContent = busy ? 'Working…' : paused ? 'Awaiting approval' : 'Send';
    this.sendButton.title = paused
      ? 'Approve or deny the call above first: the conversation goes on after that' : '';
  }

  async loadHistory(thread, view) {
    let turns = [];
    try {
      if (!this.fresh.has(thread)) ({turns} = await api(`/api/threads/${enc(thread)}/history`));
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) {
        view.append(h('li', {}, errorBox(error, 'The conversation could not be loaded')));
        return;
      }
    }
    this.runsLink.hidden = turns.length === 0;
    if (!turns.length) {
      view.append(h('li', {class: 'intro'}, emptyState('Start a conversation',
        'The supervisor plans your request, runs its agents (several at once where it can) ',
        'and answers here; the plan shows as a graph while it works. Try one of these:'),
      h('div', {class: 'examples'}, EXAMPLES.map((text) => h('button', {type: 'button',
        class: 'example', onclick: () => {
          this.input.value = text;
          this.input.focus();
        }}, text)))));
      return;
    }
    turns.forEach((turn, at) => {
      view.append(turn.role === 'user' ? this.userMessage(turn.text)
        : h('li', {class: 'message assistant'}, turn.run_id ? this.pastPlan(turn) : null,
          h('div', {class: 'answer'}, turn.text),
          turn.run_id ? h('p', {class: 'turn-status'}, this.pastRunLine(turn)) : null));
      const next = turns[at + 1];
      if (turn.role === 'user' && turn.run_id && ENDED_UNANSWERED.has(turn.status)
          && !(next && next.role === 'assistant' && next.run_id === turn.run_id)) {
        // Its run ended with no answer (a stopped server, a failure): say so, with the run.
        view.append(h('li', {class: 'message assistant unanswered'},
          h('p', {class: 'muted'}, `No answer: this run was ${turn.status}.`
            + (turn.status === 'interrupted' ? ' Its page shows what was done and resumes it, '
              + 'as long as no newer turn followed it.' : '')),
          h('p', {class: 'turn-status'}, this.pastRunLine(turn))));
      }
    });
    try {
      const pending = (await pendingByThread(thread)).get(thread);
      if (pending) {
        // The paused run is the thread's latest: its plan is drawn open, as in a live turn.
        await this.threadsLoaded;
        const info = this.threadInfo.get(thread);
        const graph = info && info.status === 'paused' ? new PlanGraph() : null;
        if (graph) followRun(info.last_run_id, graph).catch(() => {});
        this.paused.add(thread);
        this.updateComposer();
        view.append(h('li', {class: 'message assistant'}, graph ? graph.el : null,
          this.pausedBlock(thread, pending, graph, null)));
      }
    } catch { /* the history still shows */ }
    toEnd();
  }

  /** An earlier turn's plan, folded; its run's events are read when it is opened. */
  pastPlan(turn) {
    const graph = new PlanGraph();
    let read = null;
    const box = h('details', {class: 'past-plan', dataset: {runId: turn.run_id},
      ontoggle: () => {
        if (!box.open || read) return;
        read = followRun(turn.run_id, graph).catch((error) => {
          read = null;  // opened again, it tries again
          graph.el.replaceWith(errorBox(error, 'The plan could not be read'));
        });
      }},
    h('summary', {}, 'Plan of this answer'), graph.el);
    return box;
  }

  pastRunLine(turn) {
    return h('span', {class: 'run-line'}, 'Run ',
      h('a', {href: `#/runs/${enc(turn.run_id)}`}, shortId(turn.run_id)), ' ',
      turn.status ? statusPill(turn.status) : null, ' · ',
      h('a', {href: `#/runs/${enc(turn.run_id)}`}, 'trace'));
  }

  userMessage(text) {
    return h('li', {class: 'message user'}, h('div', {class: 'bubble'}, text));
  }

  async loadThreads() {
    try {
      const {threads: listed} = await api(withQuery('/api/threads', {limit: THREADS_SHOWN}));
      const threads = new Map(listed.map((t) => [t.thread_id, t]));  // newest first
      this.threadInfo = threads;
      const shown = [...threads];
      if (this.thread && !threads.has(this.thread)) shown.unshift([this.thread, null]);
      fill(this.threadList, shown.map(([id, info]) => h('li', {},
        h('a', {href: `#/chat/${enc(id)}`, class: 'thread-link', dataset: {thread: id}},
          h('span', {class: 'thread-title'}, info ? info.title || '(event)' : 'New conversation'),
          h('span', {class: 'thread-meta'}, info ? when(info.last_active_at) : 'not started',
            info ? ` · ${info.runs} run${info.runs === 1 ? '' : 's'}` : null,
            info && info.status !== 'ok' ? statusPill(info.status) : null)))));
      if (!shown.length) {
        this.threadList.append(h('li', {class: 'muted'}, 'No conversations yet.'));
      }
      this.markCurrent();
    } catch (error) {
      fill(this.threadList, h('li', {}, errorBox(error)));
    }
  }

  markCurrent() {
    for (const link of this.threadList.querySelectorAll('.thread-link')) {
      if (link.dataset.thread === this.thread) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
  }

  /** One turn: the user's message, then the plan and the answer as they arrive. */
  async send(text) {
    const thread = this.thread;
    const view = this.views.get(thread);
    view.querySelector('.intro')?.remove();
    const graph = new PlanGraph();
    const answer = h('div', {class: 'answer', 'aria-busy': 'true'});
    const status = h('p', {class: 'turn-status muted', role: 'status'}, 'Planning…');
    const turn = h('li', {class: 'message assistant streaming'}, graph.el, answer, status);
    view.append(this.userMessage(text), turn);
    toEnd();
    this.busy.add(thread);
    this.updateComposer();
    let paused = false;
    let runId = null;
    try {
      const response = await request('/v1/chat/completions', {method: 'POST',
        headers: {'X-Thread-Id': thread},
        json: {model: 'orchestrator', stream: true,
          messages: [{role: 'user', content: text}]}});
      for await (const frame of sseEvents(response)) {
        // The turn grows under the composer: the page follows it unless the reader
        // scrolled up to read something else.
        const following = atEnd();
        if (frame.comment !== undefined) {
          if (!frame.comment.startsWith(PROGRESS)) continue;
          const item = JSON.parse(frame.comment.slice(PROGRESS.length));
          if (item.type === 'run_started') runId = item.run_id;
          graph.apply(item);
          if (item.type === 'approval_requested') paused = true;
          status.textContent = this.progressLine(graph);
          if (following) toEnd();
          continue;
        }
        if (frame.data === '[DONE]') break;
        const chunk = JSON.parse(frame.data);
        if (chunk.error) {
          answer.append(errorBox(chunk.error, 'The run failed'));
          continue;
        }
        const piece = chunk.choices?.[0]?.delta?.content;
        if (piece) {
          if (!answer.textContent) status.textContent = 'Writing the answer…';
          answer.append(piece);
          if (following) toEnd();
        }
      }
      const following = atEnd();
      await this.finishTurn(thread, runId, turn, status, graph, paused, answer);
      if (following) toEnd();
    } catch (error) {
      fill(status);
      status.replaceWith(errorBox(error, 'The message was not answered'));
    } finally {
      answer.removeAttribute('aria-busy');
      turn.classList.remove('streaming');
      this.busy.delete(thread);
      this.updateComposer();
      this.runsLink.hidden = false;
      this.loadThreads();
      this.ctx.refreshCount();
    }
  }

  progressLine(graph) {
    const items = [...graph.items.values()];
    const running = items.filter((i) => i.status === 'running').length;
    const done = items.filter((i) => i.status === 'done').length;
    return `${done} of ${items.length} subtasks done` + (running ? `, ${running} running` : '');
  }

  /** Under the answer: the run it came from; for a paused run, its approval card. */
  async finishTurn(thread, runId, turn, status, graph, paused, answer) {
    // The stream named its run as it started: its record, not the thread's latest run
    // (another tab or client may have started one since).
    const run = runId ? await api(`/api/runs/${enc(runId)}`) : null;
    if (run) turn.dataset.runId = run.run_id;
    fill(status, run ? this.runLine(run) : '');
    status.classList.remove('muted');
    if (paused || (run && run.status === 'paused')) {
      const pending = (await pendingByThread(thread)).get(thread);
      if (pending) {
        // The card below shows the call and decides it: the API's and CLI's way to decide,
        // which the answer spells out for other clients, is not for this page.
        fill(answer, 'Paused: this request needs an approval before it goes on.');
        this.paused.add(thread);
        this.updateComposer();
        turn.append(this.pausedBlock(thread, pending, graph, status));
      }
    }
  }

  /** A run's line: `run` as GET /api/runs/{id} or an approval decision returns it. */
  runLine(run) {
    const spent = run.usage.input_tokens + run.usage.output_tokens;
    return h('span', {class: 'run-line'}, 'Run ',
      h('a', {href: `#/runs/${enc(run.run_id)}`}, shortId(run.run_id)), ' ',
      statusPill(run.status), ` · ${seconds(run.elapsed_s)} · ${tokens(spent)} · `,
      h('a', {href: `#/runs/${enc(run.run_id)}`}, 'trace'));
  }

  pausedBlock(thread, pending, graph, status) {
    return approvalCard(thread, pending, this.ctx.me, {graph, onDecided: (run) => {
      this.paused.delete(thread);
      this.updateComposer();
      if (status) fill(status, this.runLine(run));
      this.ctx.refreshCount();
      this.loadThreads();
    }});
  }
}

/** Statuses of a run that ended without writing an answer into the thread. */
const ENDED_UNANSWERED = new Set(['interrupted', 'failed', 'unknown']);

/** Whether the page is scrolled to (about) its end. */
function atEnd() {
  const page = document.scrollingElement || document.documentElement;
  return page.scrollTop + page.clientHeight >= page.scrollHeight - 48;
}

/** Scroll the page to its end: the newest turn just above the composer. */
function toEnd() {
  const page = document.scrollingElement || document.documentElement;
  page.scrollTop = page.scrollHeight;
}
