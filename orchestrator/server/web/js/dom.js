// Building DOM nodes: text always goes in as text (never as HTML), so nothing a server or a
// model wrote can run in the page.

/**
 * h('p', {class: 'muted', onclick: fn, dataset: {id: 'x'}}, 'text', child, [more])
 * Props starting with "on" become listeners; null/false children are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'style') Object.assign(el.style, value);
    else if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name in el && typeof value !== 'string') el[name] = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace everything inside `el` with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An error said in words (the server's error.message when it sent one). */
export function errorBox(error, prefix = '') {
  const message = error && error.message ? error.message : String(error);
  return h('p', {class: 'error', role: 'alert'}, prefix ? `${prefix}: ${message}` : message);
}

/** What a page shows when it has nothing to list. */
export function emptyState(title, ...body) {
  return h('div', {class: 'empty'}, h('p', {class: 'empty-title'}, title),
    body.length ? h('p', {class: 'muted'}, ...body) : null);
}

export function loading(text = 'Loading…') {
  return h('p', {class: 'muted loading', role: 'status'}, text);
}

/** A status pill: ok, running, paused, failed, ... */
export function statusPill(status) {
  return h('span', {class: `pill status-${status}`}, status);
}
