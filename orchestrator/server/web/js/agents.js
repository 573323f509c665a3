// The agents page: what each agent does, its tools (reads or writes, needs an approval) and
// how it has done across the runs on record (GET /api/agents).

import {api} from './api.js';
import {emptyState, errorBox, fill, h, loading} from './dom.js';
import {percent, seconds, tokens} from './format.js';

function toolBadge(tool) {
  const kind = tool.reads ? 'reads' : 'writes';
  return h('li', {class: `tool tool-${kind}`, title: tool.requires_approval
    ? 'each call needs an approval' : kind},
  h('code', {}, tool.name), ` ${kind}`, tool.requires_approval ? ' · approval' : '');
}

function stat(label, value) {
  // Each label with its value in one cell: the grid lays out pairs, not loose terms.
  return h('div', {class: 'stat'}, h('dt', {}, label), h('dd', {}, value));
}

function agentCard(agent) {
  const s = agent.stats;
  const failures = Object.entries(s.failures || {});
  return h('article', {class: 'card agent', dataset: {agent: agent.name}},
    h('header', {class: 'card-head'}, h('h3', {}, agent.name)),
    h('p', {}, agent.description),
    agent.skills.length ? h('p', {class: 'muted'}, `Skills: ${agent.skills.join(', ')}`) : null,
    h('ul', {class: 'tools', 'aria-label': `Tools of ${agent.name}`}, agent.tools.map(toolBadge)),
    s.attempts ? h('dl', {class: 'stats'},
      stat('Runs', String(s.runs)), stat('Attempts', String(s.attempts)),
      stat('Success', percent(s.success_rate)), stat('Mean time', seconds(s.mean_latency_s)),
      stat('p95 time', seconds(s.p95_latency_s)), stat('Tokens', tokens(s.tokens)))
      : h('p', {class: 'muted'}, 'No runs on record yet.'),
    failures.length ? h('p', {class: 'muted'}, 'Failures: ',
      failures.map(([kind, n]) => `${kind} ${n}`).join(', ')) : null);
}

export async function renderAgents(root) {
  const search = h('input', {id: 'agent-filter', type: 'search', name: 'filter',
    placeholder: 'Filter agents',
    title: 'Filter by name, domain, skill or tool'});
  const list = h('div', {}, loading());
  fill(root,
    h('div', {class: 'page-head'}, h('h1', {}, 'Agents'),
      h('div', {class: 'row'}, h('label', {for: 'agent-filter'}, 'Filter'), search)),
    h('p', {class: 'muted lede'}, 'The specialists the supervisor routes work to. Statistics ',
      'count every run on record; the supervisor prefers agents that succeed and answer fast.'),
    list);
  let agents;
  try {
    agents = await api('/api/agents');
  } catch (error) {
    fill(list, errorBox(error, 'Agents could not be loaded'));
    return;
  }
  const show = () => {
    const words = search.value.trim().toLowerCase();
    const shown = agents.filter((a) => !words || [a.name, a.domain, a.description,
      ...a.skills, ...a.tools.map((t) => t.name)].join(' ').toLowerCase().includes(words));
    if (!shown.length) {
      fill(list, emptyState(agents.length ? 'No agent matches.' : 'No agents are loaded.'));
      return;
    }
    const domains = [...new Set(shown.map((a) => a.domain))].sort();
    fill(list, domains.map((domain) => h('section', {class: 'domain'},
      h('h2', {}, domain.replace(/_/g, ' ')),
      h('div', {class: 'cards grid'}, shown.filter((a) => a.domain === domain).map(agentCard)))));
  };
  search.addEventListener('input', show);
  show();
}
