// The API's reference at /docs, drawn from /openapi.json: routes by tag with their
// parameters, request bodies (each $ref resolved into components/schemas), responses and the
// scope their description names, and a filter. FastAPI's Swagger UI loaded its script from a
// CDN onto the origin whose storage holds the web app's key, and needed the network; this
// page runs only the server's own files. The schema holds no data, so no key is sent, and
// every text from it goes in as text (dom.js).

import {emptyState, errorBox, fill, h} from './dom.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
const SCOPE_WORDS = 'chat|approve|ingest|admin';
const NESTED_DEPTH = 3;  // fields of fields of fields; deeper types are named, not opened
const OPEN_MATCHES = 5;  // a filter that leaves this few routes opens them

const routesBox = document.getElementById('docs-routes');
const filterInput = document.getElementById('docs-filter');
const countLine = document.getElementById('docs-count');
const routes = [];  // {el, text, section}

/** ``code`` and `code` in a docstring as <code>, the rest as text. */
function richText(text) {
  return String(text).split(/``([^`]+)``|`([^`]+)`/).map((part, i) => {
    if (i % 3 === 0) return part || null;
    return part ? h('code', {}, part) : null;
  });
}

/** A docstring as paragraphs (blank lines part them; single line breaks are spaces). */
function paragraphs(text, className = 'doc') {
  if (!text) return null;
  return String(text).trim().split(/\n\s*\n/).map((para) =>
    h('p', {class: className}, richText(para.replace(/\s*\n\s*/g, ' '))));
}

/** A schema name as a reader knows it: FastAPI prefixes clashing names with their module. */
function shortName(name) {
  if (name.startsWith('Body_')) return null;  // a form's generated name says nothing
  return name.includes('__') ? name.slice(name.lastIndexOf('__') + 2) : name;
}

class Schemas {
  constructor(spec) {
    this.spec = spec;
  }

  /** `{$ref}` → [its short name, the schema it points to]; anything else → [null, it]. */
  resolve(schema) {
    if (!schema || typeof schema.$ref !== 'string') return [null, schema || {}];
    const ref = schema.$ref;
    let node = ref.startsWith('#/') ? this.spec : null;
    for (const part of ref.slice(2).split('/')) {
      if (!node) break;
      node = node[part.replaceAll('~1', '/').replaceAll('~0', '~')];
    }
    return [shortName(ref.slice(ref.lastIndexOf('/') + 1)), node || {}];
  }

  /** A schema's type in words: `string or null`, `array of ChatMessage`, `"a" | "b"`. */
  typeOf(schema) {
    if (!schema || typeof schema !== 'object') return 'any';
    if (schema.$ref) return this.resolve(schema)[0] || 'object';
    const options = schema.anyOf || schema.oneOf;
    if (options) return [...new Set(options.map((s) => this.typeOf(s)))].join(' or ');
    if (schema.allOf && schema.allOf.length === 1) return this.typeOf(schema.allOf[0]);
    if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v)).join(' | ');
    if ('const' in schema) return JSON.stringify(schema.const);
    const type = Array.isArray(schema.type) ? schema.type.join(' or ') : schema.type;
    if (type === 'array') return `array of ${this.typeOf(schema.items)}`;
    if (type === 'object' && schema.additionalProperties
        && typeof schema.additionalProperties === 'object') {
      return `object of ${this.typeOf(schema.additionalProperties)}`;
    }
    if (type && schema.format) return `${type} (${schema.format})`;
    return type || (schema.properties ? 'object' : 'any');
  }

  /** The object with fields a schema holds (through $ref, `X or null`, arrays), if any. */
  objectIn(schema, seen) {
    for (let hops = 0; schema && hops < 8; hops += 1) {
      if (schema.$ref) {
        if (seen.has(schema.$ref)) return null;
        const [name, target] = this.resolve(schema);
        if (target.properties) return {name, schema: target, ref: schema.$ref};
        schema = target;
      } else if (schema.anyOf || schema.oneOf) {
        const real = (schema.anyOf || schema.oneOf).filter((s) => s.type !== 'null');
        if (real.length !== 1) return null;
        schema = real[0];
      } else if (schema.type === 'array') {
        schema = schema.items;
      } else {
        return schema.properties ? {name: null, schema, ref: null} : null;
      }
    }
    return null;
  }
}

/** Limits and defaults in words: `default 20 · 1 to 1000`. */
function limitsOf(schema) {
  if (!schema) return '';
  const said = [];
  if ('default' in schema) said.push(`default ${JSON.stringify(schema.default)}`);
  const range = (low, high, unit) => {
    if (low !== undefined && high !== undefined) said.push(`${low} to ${high}${unit}`);
    else if (low !== undefined) said.push(`at least ${low}${unit}`);
    else if (high !== undefined) said.push(`at most ${high}${unit}`);
  };
  range(schema.minimum, schema.maximum, '');
  range(schema.minLength, schema.maxLength, ' characters');
  range(schema.minItems, schema.maxItems, ' items');
  if (schema.pattern) said.push(`matches ${schema.pattern}`);
  return said.join(' · ');
}

/** One field (a parameter or a property): name, where, type, required, description. */
function fieldItem(schemas, {name, where = null, schema, required, description}, seen, depth) {
  const limits = limitsOf(schema) || limitsOf(schema && schema.anyOf
    && schema.anyOf.find((s) => s.type !== 'null'));
  const nested = depth < NESTED_DEPTH ? schemas.objectIn(schema, seen) : null;
  return h('li', {class: 'field', dataset: {field: name}},
    h('p', {class: 'field-head'},
      h('code', {class: 'field-name'}, name),
      where ? h('span', {class: 'field-where muted'}, `in ${where}`) : null,
      h('span', {class: 'field-type'}, schemas.typeOf(schema)),
      required ? h('span', {class: 'pill field-required'}, 'required')
        : h('span', {class: 'muted field-optional'}, 'optional')),
    description ? paragraphs(description, 'field-doc') : null,
    limits ? h('p', {class: 'field-limits muted'}, limits) : null,
    nested ? h('details', {class: 'nested'},
      h('summary', {}, `Fields of ${nested.name || name}`),
      fieldList(schemas, nested.schema, new Set([...seen, nested.ref]), depth + 1)) : null);
}

/** The properties of an object schema as a list of fields. */
function fieldList(schemas, schema, seen = new Set(), depth = 0) {
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, property]) =>
    fieldItem(schemas, {name, schema: property, required: required.has(name),
      description: property.description || schemas.resolve(property)[1].description}, seen,
    depth));
  const extra = schema.additionalProperties === false ? 'No other fields are accepted.'
    : schema.additionalProperties === true ? 'Other fields are accepted and ignored.' : null;
  return [fields.length ? h('ul', {class: 'fields'}, fields)
    : h('p', {class: 'muted'}, 'No fields.'), extra ? h('p', {class: 'muted small-print'}, extra)
    : null];
}

/** What a route needs, as its `x-scope` or its description says: a scope, any key, no key. */
function scopeOf(operation) {
  const text = `${operation.summary || ''} ${operation.description || ''}`;
  const declared = operation['x-scope'];
  const named = new Set([declared].flat().filter((s) => typeof s === 'string' && s));
  for (const pattern of [new RegExp(`\\b(${SCOPE_WORDS})\\b\`*\\s+scope`, 'gi'),
    new RegExp(`\\bscopes?\\s*:?\\s*\`*(${SCOPE_WORDS})\\b`, 'gi')]) {
    for (const match of text.matchAll(pattern)) named.add(match[1].toLowerCase());
  }
  if (named.size) return `Needs a key with the ${[...named].join(' and ')} scope`;
  if (/\b(needs|requires) no key\b/i.test(text)) return 'Needs no key';
  if (/\bany (valid )?key\b/i.test(text)) return 'Any valid key';
  return null;
}

function routeId(method, path) {
  return `${method}-${path}`.toLowerCase().replace(/[^a-z0-9_]+/g, '-').replace(/-+$/, '');
}

function requestBodyOf(schemas, body) {
  const [, resolved] = schemas.resolve(body);
  return [h('h3', {class: 'label'}, 'Request body', resolved.required ? ' (required)' : ''),
    paragraphs(resolved.description),
    Object.entries(resolved.content || {}).map(([type, media]) => {
      const object = media.schema ? schemas.objectIn(media.schema, new Set()) : null;
      return h('div', {class: 'media body'},
        h('p', {class: 'media-head'}, h('code', {}, type),
          media.schema ? [' · ', h('span', {class: 'field-type'}, schemas.typeOf(media.schema))]
            : null),
        object && object.name ? paragraphs(object.schema.description, 'doc muted') : null,
        object ? fieldList(schemas, object.schema, new Set([object.ref]))
          : null);
    })];
}

function responsesOf(schemas, responses) {
  return [h('h3', {class: 'label'}, 'Responses'),
    h('ul', {class: 'responses'}, Object.entries(responses || {}).map(([code, response]) => {
      const [, resolved] = schemas.resolve(response);
      const kinds = Object.entries(resolved.content || {});
      return h('li', {class: 'response', dataset: {status: code}},
        h('p', {class: 'response-head'},
          h('span', {class: `pill status-code code-${code[0]}xx`}, code), ' ',
          richText(resolved.description || ''),
          kinds.map(([type, media]) => [' · ', h('code', {}, type),
            media.schema ? [' ', h('span', {class: 'field-type'}, schemas.typeOf(media.schema))]
              : null])),
        kinds.map(([, media]) => {
          const object = media.schema ? schemas.objectIn(media.schema, new Set()) : null;
          return object ? h('details', {class: 'nested'},
            h('summary', {}, `Fields of ${object.name || 'the answer'}`),
            fieldList(schemas, object.schema, new Set([object.ref]), 1)) : null;
        }));
    }))];
}

function routeOf(schemas, method, path, operation) {
  const scope = scopeOf(operation);
  const id = routeId(method, path);
  const parameters = (operation.parameters || []).map((p) => schemas.resolve(p)[1]);
  const body = operation.requestBody ? schemas.resolve(operation.requestBody)[1] : null;
  const el = h('details', {class: 'route card', id, dataset: {method, path}},
    h('summary', {class: 'route-head'},
      h('span', {class: `method method-${method}`}, method.toUpperCase()),
      h('code', {class: 'route-path'}, path),
      h('span', {class: 'route-summary'}, operation.summary || ''),
      operation.deprecated ? h('span', {class: 'pill'}, 'deprecated') : null),
    h('div', {class: 'route-body'},
      paragraphs(operation.description),
      scope ? h('p', {class: 'route-scope'}, `${scope}.`) : null,
      parameters.length ? [h('h3', {class: 'label'}, 'Parameters'),
        h('ul', {class: 'fields params'}, parameters.map((p) => fieldItem(schemas, {
          name: p.name, where: p.in, schema: p.schema, required: Boolean(p.required),
          description: p.description || (p.schema && p.schema.description)}, new Set(), 0)))]
        : null,
      body ? requestBodyOf(schemas, body) : null,
      responsesOf(schemas, operation.responses),
      h('p', {class: 'route-link'}, h('a', {href: `#${id}`}, 'Link to this route'))));
  const words = [method, path, operation.summary, operation.description,
    ...(operation.tags || []), ...parameters.map((p) => p.name)];
  for (const [, media] of Object.entries((body && body.content) || {})) {
    const object = media.schema ? schemas.objectIn(media.schema, new Set()) : null;
    if (object) words.push(object.name, ...Object.keys(object.schema.properties));
  }
  return {el, text: words.filter(Boolean).join(' ').toLowerCase()};
}

function render(spec) {
  const schemas = new Schemas(spec);
  const info = spec.info || {};
  const intro = document.getElementById('docs-intro');
  intro.prepend(h('p', {class: 'api-title'}, h('strong', {}, info.title || 'This API'),
    info.version ? ` ${info.version}` : '', info.summary ? [': ', richText(info.summary)] : ''),
  paragraphs(info.description) || '');
  const tagDocs = new Map((spec.tags || []).map((t) => [t.name, t.description]));
  const byTag = new Map([...tagDocs.keys()].map((name) => [name, []]));
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const tag = (operation.tags && operation.tags[0]) || 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(routeOf(schemas, method, path, operation));
    }
  }
  const sections = [];
  for (const [tag, entries] of byTag) {
    if (!entries.length) continue;
    const section = h('section', {class: 'tag', 'aria-label': tag, dataset: {tag}},
      h('h2', {class: 'tag-name'}, tag), paragraphs(tagDocs.get(tag), 'doc muted'),
      entries.map((entry) => entry.el));
    for (const entry of entries) routes.push({...entry, section});
    sections.push(section);
  }
  fill(routesBox, sections.length ? sections
    : emptyState('The API describes no routes.'));
  applyFilter();
  openFromAddress();
}

function applyFilter() {
  const words = filterInput.value.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const route of routes) {
    route.el.hidden = !words.every((word) => route.text.includes(word));
    if (!route.el.hidden) shown += 1;
  }
  for (const section of routesBox.querySelectorAll('section.tag')) {
    section.hidden = !section.querySelector('.route:not([hidden])');
  }
  if (words.length && shown <= OPEN_MATCHES) {
    for (const route of routes) if (!route.el.hidden) route.el.open = true;
  }
  routesBox.querySelector('.no-match')?.remove();
  if (routes.length && !shown) {
    routesBox.append(h('p', {class: 'no-match empty'},
      `No route matches “${filterInput.value.trim()}”.`));
  }
  countLine.textContent = words.length ? `${shown} of ${routes.length} routes`
    : `${routes.length} routes`;
}

function openFromAddress() {
  const id = location.hash.slice(1);  // route ids are plain ASCII: nothing to decode
  const target = id ? document.getElementById(id) : null;
  if (target && target.classList.contains('route')) {
    target.hidden = false;
    target.open = true;
    target.scrollIntoView({block: 'start'});
  }
}

async function load() {
  let spec;
  try {
    // The schema needs no key: none is sent (credentials: 'omit' keeps cookies out too).
    const response = await fetch('/openapi.json', {credentials: 'omit'});
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    spec = await response.json();
  } catch (error) {
    fill(routesBox, errorBox(error,
      'The API’s description could not be loaded from /openapi.json'));
    countLine.textContent = '';
    return;
  }
  render(spec);
}

filterInput.addEventListener('input', applyFilter);
document.getElementById('expand-all').addEventListener('click', () => {
  for (const route of routes) if (!route.el.hidden) route.el.open = true;
});
document.getElementById('collapse-all').addEventListener('click', () => {
  for (const route of routes) route.el.open = false;
});
window.addEventListener('hashchange', openFromAddress);
load();
