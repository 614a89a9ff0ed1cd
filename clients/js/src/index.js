// SseClient: one event stream per browser, shared by every tab.
//
// The tabs of an origin that open the same stream URL elect a leader
// (election.js); only the leader holds an EventSource, and it relays every
// event to the other tabs over a BroadcastChannel. Every tab keeps the last
// event id it saw, so a tab that takes over resumes from there: the server
// replays what was missed, and ids already seen are dropped, so nothing is
// lost and nothing shown twice.

import {compareCursors, fullJitter} from './backoff.js'
import {HeartbeatElection, LockElection} from './election.js'
import {EventStreamParser} from './parser.js'

export {compareCursors, fullJitter, parseCursor} from './backoff.js'
export {HeartbeatElection, LockElection} from './election.js'
export {EventStreamParser} from './parser.js'

const SEEN_IDS = 1024

/**
 * @typedef {'connecting' | 'open' | 'reconnecting' | 'offline' | 'polling' | 'closed'} ConnectionState
 * @typedef {{type: string, data: string, lastEventId: string, json(): any}} StreamEvent
 */

export class SseClient {
  /**
   * @param {string} url the stream (absolute, or relative to the page)
   * @param {object} [options] see index.d.ts
   */
  constructor(url, options = {}) {
    const scope = options.scope ?? globalThis
    this.scope = scope
    this.url = new URL(url, scope.location?.href ?? 'http://localhost/').toString()
    this.options = {
      withCredentials: true,
      share: true,
      lastEventIdParam: 'lastEventId',
      backoff: {base: 1000, cap: 30000},
      failuresBeforePolling: 5,
      pollInterval: 5000,
      pollWindow: 1500,
      hiddenReconnectAfter: 60000,
      lastEventId: '',
      ...options,
    }
    this.lastEventId = this.options.lastEventId
    this.state = /** @type {ConnectionState} */ ('connecting')
    this.listeners = new Map()
    this.stateListeners = new Set()
    this.unauthorizedListeners = new Set()
    this.seen = new Set()
    this.source = null
    this.attached = new Set()
    this.failures = 0
    this.timer = null
    this.polls = 0
    this.pollAbort = null
    this.leading = false
    this.closed = false
    this.hiddenSince = null

    const canShare = this.options.share && typeof scope.BroadcastChannel === 'function'
    this.channel = canShare ? new scope.BroadcastChannel(`sse-client:${this.url}`) : null
    const callbacks = {lead: () => this.lead(), follow: () => this.follow()}
    if (!this.channel) {
      this.election = null
    } else if (scope.navigator?.locks?.request) {
      this.election = new LockElection(scope.navigator.locks, `sse-client:${this.url}`, callbacks)
    } else {
      this.election = new HeartbeatElection(this.channel, callbacks)
    }
    if (this.channel) {
      this.channel.onmessage = (message) => this.relayed(message.data)
    }
    this.wire()
    if (this.election) {
      this.election.join()
      // Ask the leader, if any, where the stream stands.
      this.channel.postMessage({kind: 'hello'})
    } else {
      this.lead()
    }
  }

  /**
   * Calls `listener` for every event named `type` (`message` for unnamed
   * ones); returns a function that removes it.
   * @param {string} type
   * @param {(event: StreamEvent) => void} listener
   */
  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set())
    this.listeners.get(type).add(listener)
    if (this.source) this.attach(type)
    return () => this.listeners.get(type)?.delete(listener)
  }

  /** @param {(state: ConnectionState) => void} listener */
  onStateChange(listener) {
    this.stateListeners.add(listener)
    return () => this.stateListeners.delete(listener)
  }

  /** Called when the server answers 401: log in again. */
  onUnauthorized(listener) {
    this.unauthorizedListeners.add(listener)
    return () => this.unauthorizedListeners.delete(listener)
  }

  /** Whether this tab holds the stream for the others. */
  get isLeader() {
    return this.leading
  }

  close() {
    if (this.closed) return
    this.disconnect()
    this.election?.leave()
    this.closed = true
    this.unwire()
    this.channel?.close()
    this.setState('closed', false)
  }

  // --- leadership -------------------------------------------------------

  lead() {
    if (this.closed) return
    this.leading = true
    this.failures = 0
    this.connect()
  }

  follow() {
    this.leading = false
    this.disconnect()
  }

  relayed(message) {
    if (!message || typeof message !== 'object' || this.closed) return
    if (message.election) {
      this.election?.receive?.(message)
      return
    }
    switch (message.kind) {
      case 'event':
        this.deliver(message.event)
        break
      case 'state':
        if (!this.leading) this.setState(message.state, false)
        if (message.lastEventId) this.advance(message.lastEventId)
        break
      case 'unauthorized':
        this.unauthorized(false)
        break
      case 'hello':
        if (this.leading) this.post({kind: 'state', state: this.state, lastEventId: this.lastEventId})
        break
      default:
    }
  }

  post(message) {
    try {
      this.channel?.postMessage(message)
    } catch {
      // A closed channel (the tab is going away): nothing to tell.
    }
  }

  // --- the stream (leader) ----------------------------------------------

  streamUrl() {
    if (!this.lastEventId) return this.url
    const url = new URL(this.url)
    url.searchParams.set(this.options.lastEventIdParam, this.lastEventId)
    return url.toString()
  }

  connect() {
    this.disconnect()
    const EventSource = this.scope.EventSource
    if (typeof EventSource !== 'function' || this.failures >= this.options.failuresBeforePolling) {
      this.poll()
      return
    }
    this.setState(this.state === 'open' ? 'reconnecting' : 'connecting')
    // A new EventSource cannot send Last-Event-ID: resume through the query.
    const source = new EventSource(this.streamUrl(), {withCredentials: this.options.withCredentials})
    this.source = source
    this.attached = new Set()
    for (const type of this.listeners.keys()) this.attach(type)
    this.attach('connected')
    source.onopen = () => {
      this.failures = 0
      this.setState('open')
    }
    source.onerror = () => {
      if (this.source !== source) return
      if (source.readyState === 2 /* CLOSED */) {
        // An error status, or not an event stream: the browser gave up.
        source.close()
        this.source = null
        this.afterFailure()
      } else {
        // The browser retries by itself, honouring the server's retry:.
        this.setState(this.scope.navigator?.onLine === false ? 'offline' : 'reconnecting')
      }
    }
  }

  attach(type) {
    if (!this.source || this.attached.has(type)) return
    this.attached.add(type)
    const source = this.source
    source.addEventListener(type, (event) => {
      this.received({type, data: event.data, id: ownId(source, event.lastEventId)})
    })
  }

  disconnect() {
    if (this.timer !== null) this.scope.clearTimeout(this.timer)
    this.timer = null
    if (this.source) this.source.close()
    this.source = null
    if (this.pollAbort) this.pollAbort.abort()
    this.pollAbort = null
  }

  /** Decides, after a failed connection, between 401, retry and polling. */
  async afterFailure() {
    const status = await this.probe()
    if (this.closed || !this.leading) return
    if (status === 401) {
      this.unauthorized(true)
      return
    }
    this.failures++
    if (this.failures >= this.options.failuresBeforePolling) {
      this.poll()
      return
    }
    this.setState(this.scope.navigator?.onLine === false ? 'offline' : 'reconnecting')
    const delay = fullJitter(this.failures - 1, this.options.backoff)
    this.timer = this.scope.setTimeout(() => this.connect(), delay)
  }

  /** The status the stream answers now (0 when unreachable). */
  async probe() {
    const abort = new AbortController()
    try {
      const response = await this.scope.fetch(this.streamUrl(), {
        credentials: this.options.withCredentials ? 'include' : 'same-origin',
        headers: {accept: 'text/event-stream'},
        signal: abort.signal,
      })
      return response.status
    } catch {
      return 0
    } finally {
      abort.abort()
    }
  }

  /** One polling round: read the replay after the last id, then wait. */
  async poll() {
    this.disconnect()
    if (this.closed || !this.leading) return
    this.setState('polling')
    const abort = new AbortController()
    this.pollAbort = abort
    let window = null
    try {
      const response = await this.scope.fetch(this.streamUrl(), {
        credentials: this.options.withCredentials ? 'include' : 'same-origin',
        headers: {accept: 'text/event-stream'},
        signal: abort.signal,
      })
      if (response.status === 401) {
        this.unauthorized(true)
        return
      }
      if (response.ok && response.body) {
        const reader = response.body.getReader()
        const decoder = new TextDecoder()
        const parser = new EventStreamParser()
        window = this.scope.setTimeout(() => abort.abort(), this.options.pollWindow)
        let caughtUp = false
        while (!caughtUp) {
          const {value, done} = await reader.read()
          if (done) break
          for (const item of parser.feed(decoder.decode(value, {stream: true}))) {
            if (item.kind === 'event') this.received({...item.event, id: ownId(parser, item.event.id)})
            // The first heartbeat after the replay: nothing more is waiting.
            if (item.kind === 'comment' && this.lastEventId) caughtUp = true
          }
        }
      }
    } catch {
      // Aborted at the end of the window, or unreachable: try again later.
    } finally {
      if (window !== null) this.scope.clearTimeout(window)
      abort.abort()
      if (this.pollAbort === abort) this.pollAbort = null
    }
    if (this.closed || !this.leading || this.state === 'closed') return
    this.polls++
    // Now and then, see whether streaming works again.
    const retryStream = typeof this.scope.EventSource === 'function' && this.polls % 12 === 0
    if (retryStream) this.failures = 0
    this.timer = this.scope.setTimeout(() => (retryStream ? this.connect() : this.poll()), this.options.pollInterval)
  }

  // --- delivery (every tab) -----------------------------------------------

  /** An event from this tab's own stream or poll: deliver and relay. */
  received(event) {
    if (this.deliver(event)) this.post({kind: 'event', event})
  }

  /** Delivers `event` unless its id was seen; returns whether it did. */
  deliver({type, data, id}) {
    // `connected` (where a stream starts) and `reset` (history gone: start
    // over from here) are about the connection, not events to show once.
    const control = type === 'connected' || type === 'reset'
    if (id && !control) {
      if (this.seen.has(id) || compareCursors(id, this.lastEventId) < 0) return false
      this.seen.add(id)
      if (this.seen.size > SEEN_IDS) this.seen.delete(this.seen.values().next().value)
    }
    if (id) {
      if (type === 'reset' || !this.lastEventId || compareCursors(id, this.lastEventId) >= 0) this.lastEventId = id
    }
    const event = {
      type,
      data,
      lastEventId: id,
      json() {
        return JSON.parse(data)
      },
    }
    for (const listener of this.listeners.get(type) ?? []) {
      try {
        listener(event)
      } catch (error) {
        console.error('[sse-client] a listener threw', error)
      }
    }
    return true
  }

  advance(id) {
    if (!this.lastEventId || compareCursors(id, this.lastEventId) > 0) this.lastEventId = id
  }

  setState(state, relay = true) {
    if (this.state === state) return
    this.state = state
    if (relay && this.leading) this.post({kind: 'state', state, lastEventId: this.lastEventId})
    for (const listener of this.stateListeners) listener(state)
  }

  unauthorized(relay) {
    if (relay) this.post({kind: 'unauthorized'})
    this.disconnect()
    this.setState('closed', relay)
    for (const listener of this.unauthorizedListeners) listener()
  }

  // --- page lifecycle ---------------------------------------------------

  wire() {
    const scope = this.scope
    if (typeof scope.addEventListener !== 'function') return
    this.handlers = {
      online: () => {
        if (this.leading && this.state !== 'open' && this.state !== 'closed') this.connect()
      },
      offline: () => {
        if (this.state !== 'closed' && this.state !== 'polling') this.setState('offline')
      },
      // Into the back/forward cache, or frozen: let another tab lead.
      pagehide: (event) => {
        if (event.persisted) this.election?.leave()
      },
      freeze: () => this.election?.leave(),
      pageshow: (event) => {
        if (event.persisted && !this.closed) {
          this.election?.join()
          if (!this.election) this.connect()
          this.post({kind: 'hello'})
        }
      },
      resume: () => {
        if (!this.closed) this.election?.join()
      },
      visibilitychange: () => {
        const hidden = scope.document?.visibilityState === 'hidden'
        if (hidden) {
          this.hiddenSince = Date.now()
          return
        }
        const away = this.hiddenSince === null ? 0 : Date.now() - this.hiddenSince
        this.hiddenSince = null
        if (away >= this.options.hiddenReconnectAfter && this.leading && this.state !== 'open') this.connect()
      },
    }
    for (const [name, handler] of Object.entries(this.handlers)) {
      const target = name === 'visibilitychange' || name === 'freeze' || name === 'resume' ? scope.document : scope
      target?.addEventListener?.(name, handler)
    }
  }

  unwire() {
    const scope = this.scope
    for (const [name, handler] of Object.entries(this.handlers ?? {})) {
      const target = name === 'visibilitychange' || name === 'freeze' || name === 'resume' ? scope.document : scope
      target?.removeEventListener?.(name, handler)
    }
  }
}

/**
 * The id of an event itself. An event's `lastEventId` is the stream's last
 * id so far (WHATWG): an event without an id repeats the one before it.
 * Streams never send one id twice, so a repeat means "no id of its own".
 * @param {object} stream the EventSource or parser the event came from
 * @param {string} lastEventId
 */
function ownId(stream, lastEventId) {
  const previous = lastIds.get(stream) ?? ''
  lastIds.set(stream, lastEventId)
  return lastEventId === previous ? '' : lastEventId
}

const lastIds = new WeakMap()

/**
 * Opens (or joins) the shared stream at `url`.
 * @param {string} url
 * @param {object} [options]
 */
export function createClient(url, options) {
  return new SseClient(url, options)
}
