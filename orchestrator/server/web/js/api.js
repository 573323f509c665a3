// Every call to the server: the key from this browser, errors as ApiError with the server's
// own words (its JSON error.message), and a 401 announced so the app asks for a key again.

const KEY_ITEM = 'orchestrator.apiKey';

export class ApiError extends Error {
  constructor(status, message, code = null) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const keyStore = {
  get() { return localStorage.getItem(KEY_ITEM); },
  set(key) { localStorage.setItem(KEY_ITEM, key); },
  clear() { localStorage.removeItem(KEY_ITEM); },
};

/** The server's error, in words. */
export async function errorOf(response) {
  let message = `${response.status} ${response.statusText || 'error'}`;
  let code = null;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      code = body.error.code || null;
    }
  } catch { /* not JSON: keep the status line */ }
  return new ApiError(response.status, message, code);
}

/** fetch with the key; a Response that is ok, else throws ApiError. */
export async function request(path, {method = 'GET', json, body, headers = {}, signal} = {}) {
  const key = keyStore.get();
  const sent = {...headers};
  if (key) sent.Authorization = `Bearer ${key}`;
  if (json !== undefined) {
    sent['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, {method, headers: sent, body, signal});
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'The server cannot be reached: check that it is running and try again.');
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) {
      window.dispatchEvent(new CustomEvent('auth-required', {detail: error.message}));
    }
    throw error;
  }
  return response;
}

/** A JSON API call. */
export async function api(path, options = {}) {
  const response = await request(path, options);
  return response.json();
}

/** A path with its query string (empty values left out). */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') query.set(name, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export const enc = encodeURIComponent;
