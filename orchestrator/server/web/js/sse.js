// Server-Sent Events read from a fetch() Response: EventSource cannot send an Authorization
// header, so streams are read by hand. Yields {comment} for comment lines (the orchestrator's
// progress rides on them) and {event, data, id} for each event.

export async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let frame = {event: 'message', data: [], id: null};
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, '');
        buffer = buffer.slice(end + 1);
        if (line === '') {
          if (frame.data.length) {
            yield {event: frame.event, data: frame.data.join('\n'), id: frame.id};
          }
          frame = {event: 'message', data: [], id: null};
        } else if (line.startsWith(':')) {
          yield {comment: line.slice(1).replace(/^ /, '')};
        } else {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'data') frame.data.push(text);
          else if (field === 'event') frame.event = text;
          else if (field === 'id') frame.id = text;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});  // a reader that stopped early lets the connection go
  }
}
