// A TCP proxy in front of the app that the browser tests use to inject the
// faults real networks and proxies cause. Modes, for connections from now
// on (`silenceStreams()` silences the streams already open):
//
// - `pass`:    forwards both ways.
// - `stall`:   forwards requests, but nothing comes back: no answer.
// - `refuse`:  answers every new connection `503` with `Retry-After: 1`.
// - `reset`:   resets every new connection at once.
// - `buffer`:  forwards the response head, then holds the body until the
//              response (or the connection) ends: a proxy that buffers.
//
// Each connection's first request line and cookie are recorded, with the
// time, so a test can see who connected when.
import net from 'node:net'

export class FaultProxy {
  constructor(upstreamPort) {
    this.upstreamPort = upstreamPort
    this.mode = 'pass'
    this.connections = new Set()
    /** @type {{at: number, mode: string, line: string, cookie: string}[]} */
    this.log = []
    this.server = net.createServer((client) => this.accept(client))
  }

  listen() {
    return new Promise((resolve) => {
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port
        resolve(this.port)
      })
    })
  }

  /** Sets what happens to connections from now on. */
  setMode(mode) {
    this.mode = mode
  }

  /** Open event streams hear nothing more, their sockets left open. */
  silenceStreams() {
    for (const connection of this.connections) {
      if (/^GET \S*\/stream/.test(connection.entry.line)) connection.stalled = true
    }
  }

  /** Closes every connection through the proxy (both sides). */
  dropAll() {
    for (const connection of this.connections) connection.destroy()
  }

  /** Requests whose first line matches `pattern`, made since `since`. */
  requests(pattern, since = 0) {
    return this.log.filter((r) => r.at >= since && pattern.test(r.line))
  }

  accept(client) {
    const mode = this.mode
    const entry = {at: Date.now(), mode, line: '', cookie: ''}
    this.log.push(entry)
    let head = ''
    client.on('data', (chunk) => {
      if (entry.line) return
      head += chunk.toString('latin1')
      const end = head.indexOf('\r\n')
      if (end >= 0) {
        entry.line = head.slice(0, end)
        entry.cookie = /\r\ncookie: *([^\r]*)/i.exec(head)?.[1] ?? ''
      }
    })
    client.on('error', () => {})
    if (mode === 'reset') {
      client.resetAndDestroy()
      return
    }
    if (mode === 'refuse') {
      client.once('data', () => {
        const body = 'the proxy refuses\n'
        client.end(
          `HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        )
      })
      return
    }
    const upstream = net.connect(this.upstreamPort, '127.0.0.1')
    const connection = {
      entry,
      stalled: mode === 'stall',
      destroy: () => {
        client.destroy()
        upstream.destroy()
      },
    }
    this.connections.add(connection)
    const gone = () => {
      this.connections.delete(connection)
      client.destroy()
      upstream.destroy()
    }
    client.on('close', gone)
    upstream.on('close', gone)
    upstream.on('error', () => {})
    client.on('data', (chunk) => upstream.write(chunk))
    let held = [] // `buffer`: the body, until the upstream ends
    let headDone = false
    upstream.on('data', (chunk) => {
      if (connection.stalled) return
      if (mode !== 'buffer') {
        client.write(chunk)
        return
      }
      if (!headDone) {
        const end = chunk.toString('latin1').indexOf('\r\n\r\n')
        if (end < 0) {
          client.write(chunk)
          return
        }
        headDone = true
        client.write(chunk.subarray(0, end + 4))
        chunk = chunk.subarray(end + 4)
      }
      held.push(chunk)
      // A buffering proxy passes a response on once it is complete (the
      // last chunk of a chunked body); the connection may carry more.
      if (Buffer.concat(held.slice(-2)).toString('latin1').endsWith('0\r\n\r\n')) {
        for (const part of held) client.write(part)
        held = []
        headDone = false
      }
    })
    upstream.on('end', () => {
      for (const chunk of held) client.write(chunk)
      held = []
      client.end()
    })
  }

  close() {
    this.dropAll()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}
