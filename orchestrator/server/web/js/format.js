// How numbers and times read in the app.

export function seconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '–';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export function tokens(n) {
  return `${(n || 0).toLocaleString('en-US')} tok`;
}

/** A Unix time as "14:03:12" today, else "12 Mar 14:03". */
export function when(unix) {
  if (!unix) return '–';
  const d = new Date(unix * 1000);
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString('en-GB', {hour: '2-digit', minute: '2-digit',
    second: today ? '2-digit' : undefined});
  return today ? time : `${d.toLocaleDateString('en-GB', {day: 'numeric', month: 'short'})} ${time}`;
}

export function shortId(id) {
  return id ? id.slice(0, 8) : '';
}

export function percent(x) {
  return `${Math.round((x || 0) * 100)}%`;
}
