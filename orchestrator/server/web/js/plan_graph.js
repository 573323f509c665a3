// The plan as a graph of subtasks that updates as progress arrives: one node per subtask
// (agent, status, time, tokens, attempts), rows by dependency depth so that subtasks able to
// run together sit side by side, and an edge for each depends_on. Recovery (retried,
// reassigned, replanned) is written on the node it happened to, as it happens.
//
// It reads the compact progress items of orchestrator/server/progress.py; run_follow.js turns
// the run store's events into the same items.

import {h, fill} from './dom.js';
import {seconds, tokens} from './format.js';

const SVG = 'http://www.w3.org/2000/svg';
const STATUS_TEXT = {
  pending: 'waiting', running: 'running', done: 'done', failed: 'failed', skipped: 'skipped',
  approval: 'needs approval', replaced: 'replaced', denied: 'denied',
};

/** A subtask's status in the words the graph, the trace and its table all use. */
export function statusLabel(status) {
  return STATUS_TEXT[status] || status;
}

export class PlanGraph {
  constructor() {
    this.items = new Map();  // subtask id -> its state
    this.order = [];
    this.mode = null;
    this.running = false;
    this.caption = h('figcaption', {class: 'plan-head'});
    this.edges = document.createElementNS(SVG, 'svg');
    this.edges.setAttribute('class', 'plan-edges');
    this.edges.setAttribute('aria-hidden', 'true');
    this.rows = h('div', {class: 'plan-rows'});
    this.body = h('div', {class: 'plan-body'}, this.edges, this.rows);
    this.notes = h('ul', {class: 'plan-notes', 'aria-live': 'polite'});
    this.el = h('figure', {class: 'plan', hidden: true, 'aria-label': 'Plan of subtasks'},
      this.caption, this.body, this.notes);
    this.resizes = new ResizeObserver(() => this.drawEdges());
    this.resizes.observe(this.body);
  }

  /** Forget everything (a run's events are about to be replayed from its start). */
  reset() {
    this.items.clear();
    this.order = [];
    this.mode = null;
    fill(this.rows);
    fill(this.notes);
    this.el.hidden = true;
  }

  /** Apply one progress item: {type, subtask_id, agent, ...}. */
  apply(p) {
    const item = p.subtask_id ? this.items.get(p.subtask_id) : null;
    switch (p.type) {
      case 'plan_made':
        this.mode = p.mode || null;
        this.setPlan(p.subtasks || []);
        return;
      case 'plan_invalid':
        this.note(`The supervisor's plan was invalid (attempt ${p.attempt ?? '?'}): ${p.error}`,
          'warn');
        return;
      case 'replanned':
        this.replanned(p);
        return;
      case 'budget_hit':
        this.note(`Budget reached${p.limit ? `: ${p.limit}` : ''}; no new work is started.`,
          'warn');
        return;
      default:
        break;
    }
    if (!item) return;
    if (p.agent) item.agent = p.agent;
    switch (p.type) {
      case 'subtask_started':
        item.status = 'running';
        item.startedAt = performance.now();
        break;
      case 'tool_called':
        item.tools += 1;
        item.lastTool = `${p.tool}${p.status === 'ok' ? '' : ` (${p.status})`}`;
        break;
      case 'tool_refused':
        item.notes.push({text: `refused ${p.tool}: ${p.reason}`, kind: 'warn'});
        break;
      case 'retried':
        item.status = 'running';
        item.attempts = p.attempt || item.attempts + 1;
        item.notes.push({text: `retried, attempt ${p.attempt}${p.after ? ` after: ${p.after}` : ''}`,
          kind: 'recovery'});
        break;
      case 'reassigned':
        item.status = 'running';
        item.notes.push({text: `reassigned from ${p.from || 'its agent'} to ${p.agent}` +
          `${p.reason ? `: ${p.reason}` : ''}`, kind: 'recovery'});
        break;
      case 'approval_requested':
        item.status = 'approval';
        item.notes.push({text: `waits for approval of ${p.tool || 'this step'}` +
          `${p.preview ? `: ${p.preview}` : ''}`, kind: 'warn'});
        break;
      case 'approval_decided':
        item.status = p.approved ? 'running' : 'denied';
        item.notes.push({text: `${p.approved ? 'approved' : 'denied'}` +
          `${p.reason ? `: ${p.reason}` : ''}`, kind: p.approved ? 'ok' : 'warn'});
        break;
      case 'subtask_finished':
      case 'subtask_failed':
      case 'subtask_skipped':
        // A subtask whose approval was denied ends skipped: it stays "denied", as the
        // trace says.
        item.status = p.type === 'subtask_skipped' && item.status === 'denied' ? 'denied'
          : {subtask_finished: 'done', subtask_failed: 'failed',
            subtask_skipped: 'skipped'}[p.type];
        if (item.status === 'failed' && item.replacedBy) item.status = 'replaced';
        item.elapsed = p.elapsed_s ?? item.elapsed;
        item.tokens = p.tokens ?? item.tokens;
        item.attempts = p.attempts ?? item.attempts;
        if (p.error && item.status !== 'done') item.error = p.error;
        if (p.reason && item.status === 'skipped') item.error = p.reason;
        break;
      default:
        return;
    }
    this.renderNode(item);
    this.tick();
  }

  setPlan(subtasks) {
    for (const s of subtasks) {
      const known = this.items.get(s.id);
      if (known) {
        Object.assign(known, {agent: s.agent, goal: s.goal, depends_on: s.depends_on || []});
      } else {
        this.items.set(s.id, {
          id: s.id, agent: s.agent, goal: s.goal, depends_on: s.depends_on || [],
          status: 'pending', startedAt: null, elapsed: null, tokens: null, attempts: 0,
          tools: 0, lastTool: null, error: null, notes: [], replacedBy: null, node: null,
        });
        this.order.push(s.id);
      }
    }
    this.layout();
  }

  replanned(p) {
    const failed = this.items.get(p.replaced);
    if (p.error || !p.subtasks) {
      this.note(`Replanning ${p.replaced} failed: ${p.error || 'no new plan'}`, 'warn');
      return;
    }
    const before = new Set(this.order);
    this.setPlan(p.subtasks);
    const added = this.order.filter((id) => !before.has(id));
    if (failed) {
      failed.status = 'replaced';
      failed.replacedBy = added;
      failed.notes.push({text: `replanned: replaced by ${added.join(', ') || 'nothing'}`,
        kind: 'recovery'});
      this.renderNode(failed);
    }
    this.note(`Replanned ${p.replaced}: new subtasks ${added.join(', ') || 'none'}.`,
      'recovery');
  }

  note(text, kind) {
    this.notes.append(h('li', {class: `note-${kind}`}, text));
    this.el.hidden = false;
  }

  /** Rows by dependency depth: a subtask sits one row below the deepest one it waits for. */
  layout() {
    const depth = new Map();
    const depthOf = (id, seen = new Set()) => {
      if (depth.has(id)) return depth.get(id);
      const item = this.items.get(id);
      if (!item || seen.has(id)) return 0;
      seen.add(id);
      const deps = item.depends_on.filter((d) => this.items.has(d));
      const d = deps.length ? 1 + Math.max(...deps.map((x) => depthOf(x, seen))) : 0;
      depth.set(id, d);
      return d;
    };
    const rows = [];
    for (const id of this.order) {
      const d = depthOf(id);
      (rows[d] ||= []).push(this.items.get(id));
    }
    fill(this.rows, rows.filter(Boolean).map((row, i) => h('div', {
      class: 'plan-row', role: 'list',
      'aria-label': `Step ${i + 1}${row.length > 1 ? `: ${row.length} subtasks side by side` : ''}`,
    }, row.map((item) => this.nodeOf(item)))));
    for (const item of this.items.values()) this.renderNode(item);
    const count = this.order.length;
    fill(this.caption, h('strong', {}, 'Plan'),
      ` · ${count} subtask${count === 1 ? '' : 's'}`, this.mode ? ` · ${this.mode}` : '');
    this.el.hidden = false;
    requestAnimationFrame(() => this.drawEdges());
  }

  nodeOf(item) {
    if (!item.node) {
      item.node = h('article', {class: 'node', role: 'listitem', dataset: {subtaskId: item.id}});
    }
    return item.node;
  }

  renderNode(item) {
    const node = this.nodeOf(item);
    node.className = `node status-${item.status}`;
    node.dataset.status = item.status;
    node.setAttribute('aria-label', `${item.id}, ${item.agent}: ${STATUS_TEXT[item.status]}`);
    const deps = item.depends_on.filter((d) => this.items.has(d));
    const meta = [
      h('span', {class: 'elapsed'}, this.elapsedText(item)),
      item.tokens !== null ? h('span', {class: 'tokens'}, tokens(item.tokens)) : null,
      item.attempts > 1 ? h('span', {class: 'attempts'}, `${item.attempts} attempts`) : null,
      item.tools ? h('span', {}, `${item.tools} tool call${item.tools === 1 ? '' : 's'}`) : null,
    ];
    fill(node,
      h('header', {class: 'node-head'},
        h('span', {class: 'node-id'}, item.id),
        h('span', {class: 'node-agent'}, item.agent),
        h('span', {class: `pill status-${item.status}`}, STATUS_TEXT[item.status])),
      h('p', {class: 'node-goal', title: item.goal}, item.goal),
      h('p', {class: 'node-meta'}, meta),
      item.lastTool ? h('p', {class: 'node-tool'}, `last tool: ${item.lastTool}`) : null,
      deps.length ? h('p', {class: 'node-deps'}, `after ${deps.join(', ')}`) : null,
      item.error ? h('p', {class: 'node-error'}, item.error) : null,
      item.notes.length ? h('ul', {class: 'node-notes'}, item.notes.map(
        (n) => h('li', {class: `note-${n.kind}`}, n.text))) : null);
  }

  elapsedText(item) {
    if (item.elapsed !== null) return seconds(item.elapsed);
    if (item.startedAt !== null && ['running', 'approval'].includes(item.status)) {
      return seconds((performance.now() - item.startedAt) / 1000);
    }
    return item.status === 'pending' ? 'not started' : '–';
  }

  /** Keep the clocks of running subtasks moving while any runs. */
  tick() {
    const live = [...this.items.values()].some((i) => i.status === 'running');
    if (live && !this.timer) {
      this.timer = setInterval(() => {
        for (const item of this.items.values()) {
          if (item.status === 'running' && item.node) {
            const clock = item.node.querySelector('.elapsed');
            if (clock) clock.textContent = this.elapsedText(item);
          }
        }
        if (![...this.items.values()].some((i) => i.status === 'running')) this.stop();
      }, 200);
    } else if (!live) {
      this.stop();
    }
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  /** Edges from each dependency's bottom to the dependent's top, drawn over the rows. */
  drawEdges() {
    const box = this.body.getBoundingClientRect();
    this.edges.setAttribute('width', box.width);
    this.edges.setAttribute('height', box.height);
    this.edges.replaceChildren();
    for (const item of this.items.values()) {
      for (const dep of item.depends_on) {
        const from = this.items.get(dep);
        if (!from || !from.node || !item.node || !from.node.isConnected) continue;
        const a = from.node.getBoundingClientRect();
        const b = item.node.getBoundingClientRect();
        const x1 = a.left + a.width / 2 - box.left;
        const y1 = a.bottom - box.top;
        const x2 = b.left + b.width / 2 - box.left;
        const y2 = b.top - box.top;
        const bend = Math.max(12, (y2 - y1) / 2);
        const path = document.createElementNS(SVG, 'path');
        path.setAttribute('d', `M${x1},${y1} C${x1},${y1 + bend} ${x2},${y2 - bend} ${x2},${y2}`);
        path.setAttribute('class', `edge edge-${from.status}`);
        this.edges.append(path);
      }
    }
  }
}
