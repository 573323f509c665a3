// The knowledge page: the tenant's collections, a search with citations, and a file upload to
// ingest (multipart; needs the ingest scope).

import {api, enc, withQuery} from './api.js';
import {emptyState, errorBox, fill, h, loading} from './dom.js';

function collectionsTable(collections) {
  if (!collections.length) {
    return emptyState('No collections yet.', 'Upload a file below to start one.');
  }
  return h('div', {class: 'table-wrap'}, h('table', {class: 'collections'},
    h('caption', {class: 'sr-only'}, 'Collections'),
    h('thead', {}, h('tr', {}, ['Collection', 'Sources', 'Chunks', 'Embedder'].map(
      (t) => h('th', {scope: 'col'}, t)))),
    h('tbody', {}, collections.map((c) => h('tr', {dataset: {collection: c.name}},
      h('th', {scope: 'row'}, c.name), h('td', {}, String(c.sources)),
      h('td', {}, String(c.chunks)), h('td', {}, `${c.embedder} (${c.dimension})`))))));
}

function hitCard(hit, n) {
  return h('li', {class: 'hit'},
    h('p', {class: 'hit-head'}, h('span', {class: 'cite'}, `[${n}]`), ' ',
      h('strong', {}, hit.title || hit.source), hit.heading ? ` · ${hit.heading}` : ''),
    h('p', {class: 'hit-text'}, hit.text),
    h('p', {class: 'muted hit-meta'}, h('code', {class: 'citation'}, hit.citation),
      ` · ${hit.collection} · score ${hit.score.toFixed(3)}`));
}

export async function renderKnowledge(root, {me}) {
  const collectionsSlot = h('div', {}, loading());
  const choose = h('select', {id: 'kb-collection', name: 'collection'},
    h('option', {value: ''}, 'all collections'));
  const names = h('datalist', {id: 'kb-names'});
  const query = h('input', {id: 'kb-query', type: 'search', name: 'q', required: true,
    placeholder: 'e.g. how do we fail over a web pool?'});
  const hits = h('div', {class: 'hits', 'aria-live': 'polite'});
  const searchForm = h('form', {class: 'stack', 'aria-label': 'Search the knowledge base'},
    h('label', {for: 'kb-query'}, 'What to look for'), query,
    h('div', {class: 'row wrap'}, h('label', {for: 'kb-collection'}, 'In'), choose,
      h('button', {type: 'submit', class: 'primary'}, 'Search')),
    hits);

  const uploadSlot = h('div', {});
  fill(root,
    h('div', {class: 'page-head'}, h('h1', {}, 'Knowledge')),
    h('p', {class: 'muted lede'}, 'What the agents can cite. Search shows each passage with ',
      'its citation (source#chunk), as answers cite it.'),
    h('div', {class: 'two'},
      h('section', {class: 'panel', 'aria-labelledby': 'kb-search-title'},
        h('h2', {id: 'kb-search-title'}, 'Search'), searchForm),
      h('div', {class: 'stack'},
        h('section', {class: 'panel', 'aria-labelledby': 'kb-collections-title'},
          h('h2', {id: 'kb-collections-title'}, 'Collections'), collectionsSlot),
        h('section', {class: 'panel', 'aria-labelledby': 'kb-upload-title'},
          h('h2', {id: 'kb-upload-title'}, 'Upload a file'), uploadSlot))),
    names);

  const loadCollections = async () => {
    try {
      const collections = await api('/api/knowledge/collections');
      fill(collectionsSlot, collectionsTable(collections));
      const chosen = choose.value;
      fill(choose, h('option', {value: ''}, 'all collections'),
        collections.map((c) => h('option', {value: c.name, selected: c.name === chosen}, c.name)));
      fill(names, collections.map((c) => h('option', {value: c.name})));
    } catch (error) {
      fill(collectionsSlot, errorBox(error, 'Collections could not be loaded'));
    }
  };

  searchForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    fill(hits, loading('Searching…'));
    try {
      const found = await api(withQuery('/api/knowledge/search', {q: query.value.trim(),
        collection: choose.value || null, k: 8}));
      fill(hits, found.hits.length
        ? h('ol', {class: 'hit-list', 'aria-label': 'Results'}, found.hits.map((hit, i) =>
          hitCard(hit, i + 1)))
        : emptyState('Nothing found.', 'Try other words, or another collection.'));
    } catch (error) {
      fill(hits, errorBox(error, 'The search failed'));
    }
  });

  if (!me.scopes.includes('ingest')) {
    fill(uploadSlot, h('p', {class: 'notice scope-notice', role: 'note'},
      `Uploading needs the ingest scope. Your key “${me.name}” has `,
      `${me.scopes.join(', ') || 'no scopes'}.`));
  } else {
    const target = h('input', {id: 'kb-target', name: 'collection', required: true,
      list: 'kb-names', placeholder: 'e.g. runbooks'});
    const file = h('input', {id: 'kb-file', type: 'file', name: 'file', required: true,
      accept: '.md,.txt,.html,.htm,.pdf,.jsonl'});
    const outcome = h('div', {'aria-live': 'polite'});
    const send = h('button', {type: 'submit', class: 'primary'}, 'Upload and ingest');
    const form = h('form', {class: 'stack', 'aria-label': 'Upload a file to ingest'},
      h('label', {for: 'kb-target'}, 'Collection (new or existing)'), target,
      h('label', {for: 'kb-file'}, 'File (Markdown, text, HTML, PDF or JSONL)'), file,
      h('div', {class: 'row end'}, send), outcome);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (!file.files.length) return;
      const body = new FormData();
      body.append('file', file.files[0]);
      send.disabled = true;
      fill(outcome, loading('Uploading and ingesting…'));
      try {
        const done = await api(`/api/knowledge/${enc(target.value.trim())}/files`,
          {method: 'POST', body});
        fill(outcome, h('p', {class: 'success', role: 'status'},
          `Ingested ${done.source} into ${done.collection}: ${done.chunks_added} chunk${done.chunks_added === 1 ? '' : 's'} added` +
          `${done.skipped ? `, ${done.skipped} unchanged` : ''}.`));
        form.reset();
        await loadCollections();
      } catch (error) {
        fill(outcome, errorBox(error, 'The file was not ingested'));
      } finally {
        send.disabled = false;
      }
    });
    fill(uploadSlot, form);
  }
  await loadCollections();
}
