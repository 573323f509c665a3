// Following one run from the run store: GET /api/runs/{id}/events replays what it has done and
// then goes on live until the run ends or pauses. Each event is turned into the compact
// progress item the chat stream sends (orchestrator/server/progress.py), so one PlanGraph
// draws both.

import {enc, request} from './api.js';
import {sseEvents} from './sse.js';

const KEPT = ['mode', 'goal', 'status', 'error', 'tool', 'attempt', 'attempts', 'replaced',
  'key', 'preview', 'why', 'approved', 'limit', 'reason', 'elapsed_s', 'from', 'after'];

/** A stored event ({type, subtask_id, agent, data, usage}) as a progress item. */
export function progressOf(event) {
  const data = event.data || {};
  const item = {type: event.type};
  if (event.subtask_id) item.subtask_id = event.subtask_id;
  if (event.agent) item.agent = event.agent;
  for (const key of KEPT) {
    if (data[key] !== undefined && data[key] !== null) item[key] = data[key];
  }
  const usage = event.usage || {};
  const spent = (usage.input_tokens || 0) + (usage.output_tokens || 0);
  if (spent) item.tokens = spent;
  if (['plan_made', 'replanned'].includes(event.type) && data.plan) {
    item.subtasks = (data.plan.subtasks || []).map((s) => ({
      id: s.id, agent: s.agent, goal: s.goal || '', depends_on: s.depends_on || []}));
  }
  return item;
}

const RECONNECT_MS = 300;

/**
 * Replay and follow run `runId` into `graph` (reset first). Resolves with the status the
 * stream ended on (ok, paused, failed, ...), or null when `signal` stopped it. A stream ends
 * when the run pauses; while `waiting()` says a decision on it is under way, the follow goes
 * on from the last event seen (Last-Event-ID) once the run is on its way again.
 */
export async function followRun(runId, graph, {signal, onEvent, waiting = () => false} = {}) {
  let last = null;
  graph.reset();
  try {
    for (;;) {
      const headers = last === null ? {} : {'Last-Event-ID': last};
      const response = await request(`/api/runs/${enc(runId)}/events`, {signal, headers});
      let status = null;
      for await (const frame of sseEvents(response)) {
        if (frame.comment !== undefined) continue;
        const payload = JSON.parse(frame.data);
        if (frame.event === 'end') {
          status = payload.status;
          break;
        }
        last = frame.id;
        graph.apply(progressOf(payload));
        if (onEvent) onEvent(payload);
      }
      if (status !== 'paused' || !waiting()) return status;
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
    }
  } catch (error) {
    if (error.name === 'AbortError') return null;
    throw error;
  }
}
