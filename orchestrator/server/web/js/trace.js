// A run's trace as a timeline: one lane per agent, a bar per subtask from its start to its
// end, and before it, hatched, the time it waited (ready, its dependencies done, but not yet
// started). Subtasks of one agent that overlap get rows of their own inside its lane, so
// what ran in parallel is side by side in time.

import {h} from './dom.js';
import {seconds, tokens} from './format.js';
import {statusLabel} from './plan_graph.js';

function offsets(span, base) {
  const start = span.start_offset_s;
  const end = span.end_offset_s;
  const ready = span.ready_at !== null && base !== null ? span.ready_at - base : null;
  return {start, end, ready};
}

/** Rows inside a lane: each span goes in the first row free at its start. */
function rowsOf(spans, total) {
  const rows = [];
  for (const span of spans) {
    const start = span.start_offset_s ?? 0;
    const end = span.end_offset_s ?? total;
    const row = rows.find((r) => r.end <= start + 1e-6);
    if (row) {
      row.spans.push(span);
      row.end = end;
    } else {
      rows.push({end, spans: [span]});
    }
  }
  return rows.map((r) => r.spans);
}

function describe(span) {
  const parts = [`${span.id} (${span.agent}): ${span.goal}`,
    `status ${statusLabel(span.status)}`];
  if (span.start_offset_s !== null) parts.push(`started at +${seconds(span.start_offset_s)}`);
  parts.push(`ran ${seconds(span.elapsed_s - span.approval_wait_s)}`);
  if (span.approval_wait_s > 0.0005) {
    parts.push(`waited ${seconds(span.approval_wait_s)} for a decision`);
  }
  if (span.waited_s > 0.0005) parts.push(`waited ${seconds(span.waited_s)}`);
  if (span.parallel_with.length) parts.push(`in parallel with ${span.parallel_with.join(', ')}`);
  if (span.attempts > 1) parts.push(`${span.attempts} attempts`);
  return parts.join('; ');
}

/** The timeline element of a trace (GET /api/runs/{id}/trace). */
export function timeline(trace) {
  const spans = new Map(trace.subtasks.map((s) => [s.id, s]));
  const anchored = trace.subtasks.find((s) => s.started_at !== null && s.start_offset_s !== null);
  const base = anchored ? anchored.started_at - anchored.start_offset_s : null;
  const total = Math.max(0.001, trace.run.wall_s || 0,
    ...trace.subtasks.map((s) => s.end_offset_s ?? s.start_offset_s ?? 0));
  const pct = (x) => `${Math.max(0, Math.min(100, (x / total) * 100))}%`;

  if (!trace.subtasks.length) {
    return h('p', {class: 'muted'}, 'This run has no subtasks on record (it was answered ' +
      'without running agents, or stopped before its plan).');
  }
  const lanes = trace.agents.map((lane) => {
    const laneSpans = lane.subtasks.map((id) => spans.get(id)).filter(Boolean);
    return h('div', {class: 'lane', role: 'listitem', dataset: {agent: lane.agent}},
      h('div', {class: 'lane-label'},
        h('strong', {}, lane.agent),
        h('span', {class: 'muted'}, `busy ${seconds(lane.busy_s)} · waited ` +
          `${seconds(lane.waited_s)} · ${tokens(lane.tokens)}`)),
      h('div', {class: 'lane-track'}, rowsOf(laneSpans, total).map((row) => h('div',
        {class: 'lane-row'}, row.map((span) => {
          const {start, end, ready} = offsets(span, base);
          const bars = [];
          if (ready !== null && start !== null && span.waited_s > 0.0005) {
            bars.push(h('div', {class: 'bar wait', 'aria-hidden': 'true',
              style: {left: pct(ready), width: pct(Math.max(0, start - ready))}}));
          }
          if (start !== null) {
            const width = Math.max((end ?? total) - start, total * 0.006);
            bars.push(h('div', {class: `bar run status-${span.status}`, role: 'img',
              tabindex: 0, title: describe(span), 'aria-label': describe(span),
              dataset: {subtaskId: span.id},
              style: {left: pct(start), width: pct(width)}}, h('span', {}, span.id)));
            // Over it, the time it waited for a person's decision (not work, not a wait
            // for a free slot).
            for (const [asked, decided] of span.approval_waits) {
              bars.push(h('div', {class: 'bar decision', 'aria-hidden': 'true',
                style: {left: pct(asked), width: pct(Math.max((decided ?? total) - asked,
                  total * 0.004))}}));
            }
          }
          return bars;
        })))));
  });
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => h('span', {class: 'tick',
    style: {left: `${f * 100}%`}}, seconds(total * f)));
  return h('div', {class: 'timeline'},
    h('div', {class: 'lanes', role: 'list', 'aria-label': 'Timeline, one lane per agent'},
      lanes,
      h('div', {class: 'lane axis', 'aria-hidden': 'true'}, h('div', {class: 'lane-label'}),
        h('div', {class: 'lane-track'}, ticks))),
    h('p', {class: 'legend muted'},
      h('span', {class: 'swatch run'}), ' running ',
      h('span', {class: 'swatch wait'}), ' waited: ready but not yet started ',
      h('span', {class: 'swatch decision'}), ' waited for a decision'),
    parallelSummary(trace.subtasks));
}

/** Which subtasks overlapped in time, in words. */
function parallelSummary(subtasks) {
  const groups = [];
  const placed = new Set();
  for (const span of subtasks) {
    if (placed.has(span.id) || !span.parallel_with.length) continue;
    const group = [span.id, ...span.parallel_with.filter((id) => !placed.has(id))];
    group.forEach((id) => placed.add(id));
    groups.push(group);
  }
  const waited = subtasks.filter((s) => s.depends_on.length);
  return h('ul', {class: 'trace-summary'},
    groups.map((g) => h('li', {}, `Ran in parallel: ${g.join(', ')}`)),
    waited.map((s) => h('li', {}, `${s.id} waited for ${s.depends_on.join(', ')}` +
      (s.waited_s > 0.0005 ? `, then ${seconds(s.waited_s)} for a free slot` : ''))),
    !groups.length && !waited.length ? h('li', {}, 'Every subtask ran on its own.') : null);
}

/** The subtasks as a table (what each did, its time and tokens). */
export function spanTable(trace) {
  return h('div', {class: 'table-wrap'}, h('table', {class: 'spans'},
    h('caption', {class: 'sr-only'}, 'Subtasks of the run'),
    h('thead', {}, h('tr', {}, ['Subtask', 'Agent', 'Status', 'Waited', 'Ran', 'Attempts',
      'Tokens'].map((t) => h('th', {scope: 'col'}, t)))),
    h('tbody', {}, trace.subtasks.map((s) => h('tr', {},
      h('th', {scope: 'row', title: s.goal}, s.id), h('td', {}, s.agents_tried.length > 1
        ? s.agents_tried.join(' → ') : s.agent),
      h('td', {}, statusLabel(s.status)), h('td', {}, seconds(s.waited_s + s.approval_wait_s)),
      h('td', {}, seconds(s.elapsed_s - s.approval_wait_s)),
      h('td', {}, String(s.attempts)), h('td', {}, tokens(s.tokens)))))));
}
