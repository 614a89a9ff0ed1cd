// A streaming parser for `text/event-stream`, following the WHATWG HTML
// "server-sent events" interpretation rules: feed it text as it arrives,
// in any chunking, and it returns the events and fields it completed.

/**
 * @typedef {{type: string, data: string, id: string}} ParsedEvent
 * @typedef {{kind: 'event', event: ParsedEvent} | {kind: 'retry', ms: number} | {kind: 'comment', text: string}} Item
 */

export class EventStreamParser {
  constructor() {
    this.buffer = ''
    this.data = []
    this.type = ''
    this.lastEventId = ''
    this.sawCr = false
    this.started = false
  }

  /**
   * @param {string} text
   * @returns {Item[]}
   */
  feed(text) {
    if (!this.started) {
      this.started = true
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
    }
    // A CR at the end of the previous chunk already ended its line; a LF
    // right after it belongs to that line ending.
    if (this.sawCr && text.startsWith('\n')) text = text.slice(1)
    this.sawCr = false
    this.buffer += text
    const items = []
    let start = 0
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i]
      if (c !== '\n' && c !== '\r') continue
      const line = this.buffer.slice(start, i)
      if (c === '\r') {
        if (i + 1 < this.buffer.length) {
          if (this.buffer[i + 1] === '\n') i++
        } else {
          this.sawCr = true
        }
      }
      start = i + 1
      this.line(line, items)
    }
    this.buffer = this.buffer.slice(start)
    return items
  }

  line(line, items) {
    if (line === '') {
      if (this.data.length > 0) {
        items.push({kind: 'event', event: {type: this.type || 'message', data: this.data.join('\n'), id: this.lastEventId}})
      }
      this.data = []
      this.type = ''
      return
    }
    if (line.startsWith(':')) {
      items.push({kind: 'comment', text: line.slice(1)})
      return
    }
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    switch (field) {
      case 'data':
        this.data.push(value)
        break
      case 'event':
        this.type = value
        break
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value
        break
      case 'retry':
        if (/^[0-9]+$/.test(value)) items.push({kind: 'retry', ms: Number(value)})
        break
      default:
    }
  }
}
