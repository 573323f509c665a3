// Approval cards: the exact call a paused run waits for (tool, arguments, preview, reason) and
// a decision with a reason. One card per thread: a decision covers every call its paused run
// waits for (POST /api/threads/{id}/approvals), and names them by the keys the card shows, so
// a card shown before the thread moved on decides nothing (409 approval_changed): it says so
// and shows what waits now instead. After deciding, the run's progress is followed live and
// its result shown on the card.

import {ApiError, api, enc, withQuery} from './api.js';
import {emptyState, errorBox, fill, h, loading, statusPill} from './dom.js';
import {shortId} from './format.js';
import {PlanGraph} from './plan_graph.js';
import {followRun} from './run_follow.js';

/** The tenant's pending approvals grouped by thread, newest thread first. */
export async function pendingByThread(threadId = null) {
  const {approvals} = await api(withQuery('/api/approvals', {thread_id: threadId}));
  const threads = new Map();
  for (const approval of approvals) {
    if (!threads.has(approval.thread_id)) threads.set(approval.thread_id, []);
    threads.get(approval.thread_id).push(approval);
  }
  return threads;
}

function callOf(approval) {
  return h('div', {class: 'call'},
    h('p', {class: 'call-head'},
      h('span', {class: 'node-agent'}, approval.agent), ' wants to ',
      approval.tool ? h('code', {class: 'call-tool'}, approval.tool) : 'run a playbook step',
      h('span', {class: 'muted'}, ` (subtask ${approval.subtask_id})`)),
    h('p', {class: 'call-goal'}, approval.goal),
    approval.args ? [h('p', {class: 'label'}, 'Arguments'),
      h('pre', {class: 'call-args'}, JSON.stringify(approval.args, null, 2))] : null,
    approval.preview ? [h('p', {class: 'label'}, 'What it would do'),
      h('p', {class: 'call-preview'}, approval.preview)] : null,
    approval.why ? [h('p', {class: 'label'}, 'Why it needs an approval'),
      h('p', {class: 'call-why'}, approval.why)] : null,
    approval.again ? h('p', {class: 'notice'},
      'Asked again: the systems changed since an earlier approval of this call.') : null);
}

function sameCalls(shown, now) {
  const keys = (list) => [...new Set(list.map((a) => a.key))].sort().join('\n');
  return keys(shown) === keys(now);
}

const CHANGED = 'The calls waiting on this thread changed since this card was shown, so ' +
  'nothing was decided.';

/**
 * A card for `thread`'s pending `approvals`. `graph`: a PlanGraph to follow the run in (the
 * chat's own); otherwise the card draws one. `onDecided(run)` is told the outcome. `changed`:
 * the card replaces one that went stale, and says so.
 */
export function approvalCard(thread, approvals, me, options = {}) {
  const {graph = null, onDecided = null, changed = false} = options;
  const result = h('div', {class: 'decision-result', 'aria-live': 'polite'});
  const notice = changed ? h('p', {class: 'error changed', role: 'alert', tabindex: -1},
    `${CHANGED} Below is what the run waits for now: read it before you decide.`) : null;
  const card = h('article', {class: 'card approval', dataset: {thread},
    'aria-label': `Approval for thread ${thread}`},
  h('header', {class: 'card-head'},
    h('h3', {}, approvals.length > 1 ? `${approvals.length} calls need an approval`
      : 'A call needs an approval'),
    h('a', {href: `#/chat/${enc(thread)}`, class: 'muted'}, `thread ${thread}`)),
  notice, approvals.map(callOf), result);

  if (!me.scopes.includes('approve')) {
    card.append(h('p', {class: 'notice scope-notice', role: 'note'},
      `Deciding needs the approve scope. Your key “${me.name}” has `,
      `${me.scopes.join(', ') || 'no scopes'}; ask an administrator for one with `,
      h('code', {}, '--scopes chat,approve'), '.'));
    return card;
  }
  const reasonId = `reason-${Math.random().toString(36).slice(2, 10)}`;
  const reason = h('textarea', {id: reasonId, rows: 2, name: 'reason',
    placeholder: 'e.g. change CR-42, in the maintenance window'});
  const approve = h('button', {type: 'button', class: 'primary'}, 'Approve');
  const deny = h('button', {type: 'button', class: 'danger'}, 'Deny');
  const form = h('div', {class: 'decide'},
    h('label', {for: reasonId}, 'Reason (stored with the decision)'), reason,
    h('div', {class: 'row end'}, deny, approve));
  card.append(form);

  // What waits now replaces this card, which decided nothing; with nothing left, it says so.
  const showChanged = async () => {
    let now;
    try {
      now = (await pendingByThread(thread)).get(thread) || [];
    } catch (error) {
      fill(result, h('p', {class: 'error', role: 'alert'}, CHANGED), errorBox(error,
        'What waits now could not be loaded'));
      approve.disabled = deny.disabled = reason.disabled = false;  // trying again checks again
      return;
    }
    if (!now.length) {
      form.remove();
      fill(result, h('p', {class: 'error changed', role: 'alert'}, CHANGED,
        ' Nothing waits for an approval on this thread any more.'));
      return;
    }
    const fresh = approvalCard(thread, now, me, {...options, changed: true});
    card.replaceWith(fresh);
    fresh.querySelector('.changed').focus();
  };

  const decide = async (yes) => {
    approve.disabled = deny.disabled = reason.disabled = true;
    fill(result, h('p', {class: 'muted', role: 'status'},
      yes ? 'Approved: the run goes on…' : 'Denied: the run goes on without it…'));
    const shown = graph || new PlanGraph();
    let deciding = true;
    let follow = Promise.resolve();
    try {
      // Checked first so a stale card does not draw another run's plan; the server checks
      // again (keys), which settles a change between the two.
      const now = (await pendingByThread(thread)).get(thread) || [];
      if (!sameCalls(approvals, now)) {
        await showChanged();
        return;
      }
      if (!graph) result.append(shown.el);
      const {runs} = await api(withQuery('/api/runs', {thread_id: thread, status: 'paused',
        limit: 1}));
      if (runs.length) {
        follow = followRun(runs[0].run_id, shown, {waiting: () => deciding})
          .catch(() => {});  // the live view is a bonus: the decision's answer still shows
      }
      const run = await api(`/api/threads/${enc(thread)}/approvals`, {method: 'POST',
        json: {approve: yes, reason: reason.value.trim() || null,
          keys: approvals.map((a) => a.key)}});
      deciding = false;
      await follow;
      form.remove();
      fill(result,
        h('p', {class: 'decided'}, `${yes ? 'Approved' : 'Denied'} by ${me.name}. Run `,
          h('a', {href: `#/runs/${enc(run.run_id)}`}, shortId(run.run_id)), ' ended ',
          statusPill(run.status), '.'),
        graph ? null : shown.el,
        run.answer ? h('div', {class: 'answer'}, run.answer) : null);
      card.classList.add('is-decided');
      if (onDecided) onDecided(run);
    } catch (error) {
      deciding = false;
      if (error instanceof ApiError && error.code === 'approval_changed') {
        await follow;
        await showChanged();
        return;
      }
      fill(result, errorBox(error, 'The decision was not taken'));
      approve.disabled = deny.disabled = reason.disabled = false;
    }
  };
  approve.addEventListener('click', () => decide(true));
  deny.addEventListener('click', () => decide(false));
  return card;
}

/** The approvals page. */
export async function renderApprovals(root, {me, refreshCount}) {
  const list = h('div', {class: 'cards'}, loading());
  fill(root,
    h('div', {class: 'page-head'}, h('h1', {}, 'Approvals'),
      h('button', {type: 'button', class: 'ghost', onclick: () => load()}, 'Refresh')),
    h('p', {class: 'muted lede'}, 'Paused runs wait here for a person to approve or deny the ',
      'exact call. The decision and its reason are recorded with your key’s name.'),
    list);
  const load = async () => {
    try {
      const threads = await pendingByThread();
      if (!threads.size) {
        fill(list, emptyState('Nothing waits for an approval.',
          'A run that needs one (try “planned failover for web-2” in Chat) shows up here.'));
      } else {
        fill(list, [...threads].map(([thread, approvals]) => approvalCard(thread, approvals, me,
          {onDecided: refreshCount})));
      }
    } catch (error) {
      fill(list, errorBox(error, 'Approvals could not be loaded'));
    }
    refreshCount();
  };
  await load();
}
