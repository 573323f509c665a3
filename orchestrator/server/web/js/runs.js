// The runs page (the tenant's runs, newest first, by status or thread) and one run: its plan
// (followed live while it works), its timeline per agent, its answer and its events.

import {api, enc, withQuery} from './api.js';
import {emptyState, errorBox, fill, h, loading, statusPill} from './dom.js';
import {seconds, shortId, tokens, when} from './format.js';
import {PlanGraph} from './plan_graph.js';
import {followRun} from './run_follow.js';
import {spanTable, timeline} from './trace.js';

const STATUSES = ['', 'running', 'paused', 'ok', 'partial', 'failed', 'interrupted', 'unknown'];

export async function renderRuns(root, ctx, query) {
  const thread = query.get('thread') || '';
  const status = h('select', {id: 'run-status', name: 'status'},
    STATUSES.map((s) => h('option', {value: s, selected: s === (query.get('status') || '')},
      s || 'any status')));
  const list = h('div', {}, loading());
  fill(root,
    h('div', {class: 'page-head'}, h('h1', {}, 'Runs'),
      h('div', {class: 'row'}, h('label', {for: 'run-status'}, 'Status'), status)),
    thread ? h('p', {class: 'muted'}, `Conversation ${thread} · `,
      h('a', {href: '#/runs'}, 'all runs')) : null,
    list);
  status.addEventListener('change', () => {
    location.hash = withQuery('#/runs', {thread, status: status.value});
  });
  try {
    const {runs} = await api(withQuery('/api/runs', {limit: 100, thread_id: thread || null,
      status: query.get('status') || null}));
    if (!runs.length) {
      const filtered = query.get('status') || thread;
      fill(list, filtered
        ? emptyState(`No ${query.get('status') || ''} runs here.`.replace('  ', ' '),
          'None of the runs matches this filter; ', h('a', {href: '#/runs'}, 'see all runs'), '.')
        : emptyState('No runs yet.', 'Every request you send in Chat is a run; ',
          'it shows up here with its trace.'));
      return;
    }
    fill(list, h('ul', {class: 'run-list', 'aria-label': 'Runs'}, runs.map((run) => h('li', {},
      h('a', {class: 'run-item', href: `#/runs/${enc(run.run_id)}`, dataset: {runId: run.run_id}},
        h('span', {class: 'run-request'}, run.request || '(event)'),
        h('span', {class: 'run-meta'}, statusPill(run.status),
          h('span', {}, when(run.started_at)), h('span', {}, seconds(run.elapsed_s)),
          h('span', {}, tokens(run.tokens)), h('span', {}, run.mode),
          h('span', {class: 'muted'}, `thread ${run.thread_id}`),
          h('span', {class: 'muted mono'}, shortId(run.run_id))))))));
  } catch (error) {
    fill(list, errorBox(error, 'Runs could not be loaded'));
  }
}

export async function renderRun(root, ctx, runId) {
  const graph = new PlanGraph();
  const head = h('div', {}, loading());
  const trace = h('div', {class: 'trace'}, loading('Loading the trace…'));
  const answer = h('div', {});
  const events = h('div', {});
  fill(root,
    h('p', {}, h('a', {href: '#/runs'}, '← All runs')),
    head,
    h('section', {class: 'panel', 'aria-label': 'Plan'}, graph.el),
    h('section', {class: 'panel', 'aria-labelledby': 'timeline-title'},
      h('h2', {id: 'timeline-title'}, 'Timeline per agent'), trace),
    answer, events);
  let run;
  try {
    run = await api(`/api/runs/${enc(runId)}`);
  } catch (error) {
    // Only the error and the way back: no empty plan or timeline under it.
    fill(root, h('p', {}, h('a', {href: '#/runs'}, '← All runs')),
      errorBox(error, 'This run could not be loaded'));
    return;
  }
  showHead(head, run);
  showAnswer(answer, run);
  const signal = ctx.pageSignal;
  // Replays the plan; a run still working is followed until it ends or pauses.
  const followed = followRun(runId, graph, {signal}).catch((error) => {
    graph.el.hidden = false;
    graph.el.replaceWith(errorBox(error, 'The run’s events could not be read'));
  });
  await loadTrace(trace, events, runId);
  if (['running', 'resuming'].includes(run.status)) {
    const ended = await followed;
    if (ended && !signal.aborted) {
      run = await api(`/api/runs/${enc(runId)}`);
      showHead(head, run);
      showAnswer(answer, run);
      await loadTrace(trace, events, runId);
    }
  }
}

function showHead(head, run) {
  fill(head,
    h('div', {class: 'page-head'}, h('h1', {class: 'run-title'}, run.request || 'Run'),
      statusPill(run.status)),
    h('dl', {class: 'facts'},
      h('dt', {}, 'Run'), h('dd', {class: 'mono'}, run.run_id),
      h('dt', {}, 'Conversation'), h('dd', {}, h('a', {href: `#/chat/${enc(run.thread_id)}`},
        run.thread_id)),
      h('dt', {}, 'Planned by'), h('dd', {}, run.mode || '–'),
      h('dt', {}, 'Started'), h('dd', {}, when(run.started_at)),
      h('dt', {}, 'Time'), h('dd', {}, seconds(run.elapsed_s)),
      h('dt', {}, 'Model calls'), h('dd', {}, String(run.usage.llm_calls)),
      h('dt', {}, 'Tokens'), h('dd', {}, tokens(run.usage.input_tokens +
        run.usage.output_tokens))),
    run.error ? errorBox({message: run.error}, 'Error') : null,
    run.budget_hit ? h('p', {class: 'notice'}, `Budget reached: ${run.budget_hit}`) : null,
    run.status === 'paused' ? h('p', {class: 'notice'}, 'This run waits for an approval: ',
      h('a', {href: '#/approvals'}, 'decide it on the approvals page'), '.') : null,
    run.status === 'interrupted' ? resumeNotice(run) : null);
}

/** An interrupted run (its server stopped, or it was cancelled) goes on from its last
 * checkpoint: finished subtasks are not redone and writes are not repeated. */
function resumeNotice(run) {
  const button = h('button', {type: 'button', class: 'primary small'}, 'Resume');
  const notice = h('p', {class: 'notice'}, 'This run stopped before its end. Resuming goes on ',
    'from its last step: finished subtasks are not redone, writes are not done twice. ', button);
  button.addEventListener('click', async () => {
    button.disabled = true;
    button.textContent = 'Resuming…';
    try {
      await api(`/api/runs/${enc(run.run_id)}/resume`, {method: 'POST',
        json: {background: true}});
      window.dispatchEvent(new HashChangeEvent('hashchange'));  // the page again, live
    } catch (error) {
      notice.replaceWith(errorBox(error, 'The run could not be resumed'));
    }
  });
  return notice;
}

function showAnswer(slot, run) {
  fill(slot, run.answer ? h('section', {class: 'panel', 'aria-labelledby': 'answer-title'},
    h('h2', {id: 'answer-title'}, 'Answer'), h('div', {class: 'answer'}, run.answer)) : null);
}

async function loadTrace(slot, eventSlot, runId) {
  try {
    const trace = await api(`/api/runs/${enc(runId)}/trace`);
    fill(slot, timeline(trace), trace.subtasks.length ? spanTable(trace) : null);
    const start = trace.events.length ? trace.events[0].time : 0;
    fill(eventSlot, h('details', {class: 'panel'},
      h('summary', {}, `Events (${trace.events.length})`),
      h('ol', {class: 'event-log'}, trace.events.map((e) => h('li', {},
        h('span', {class: 'mono muted'}, `+${seconds(e.time - start)}`), ' ',
        h('strong', {}, e.type), e.subtask_id ? ` ${e.subtask_id}` : '',
        e.agent ? ` · ${e.agent}` : '')))));
  } catch (error) {
    fill(slot, errorBox(error, 'The trace could not be loaded'));
  }
}
