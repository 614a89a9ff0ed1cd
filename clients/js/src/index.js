// SseClient: one event stream per user and browser, shared by that user's tabs.
//
// The tabs of an origin that open the same stream URL *for the same user*
// elect a leader (election.js); only the leader holds the stream, and it
// relays every event to the other tabs over a BroadcastChannel. Channel and
// lock are named by URL and user, every relayed message carries the user,
// and the stream's first event (`connected`) says whose it is: a tab never
// shows another user's events, even when the cookie under it changes hands
// (logout and login as someone else in another tab). Every tab keeps the
// last event id it saw, so a tab that takes over resumes from there: the
// server replays what was missed, and ids already seen are dropped, so
// nothing is lost and nothing shown twice.

import {compareCursors, fullJitter} from './backoff.js'
import {HeartbeatElection, LockElection} from './election.js'
import {readStream} from './stream.js'

export {compareCursors, fullJitter, parseCursor} from './backoff.js'
export {HeartbeatElection, LockElection} from './election.js'
export {EventStreamParser} from './parser.js'

const SEEN_IDS = 1024

/**
 * @typedef {'connecting' | 'open' | 'reconnecting' | 'offline' | 'polling' | 'closed'} ConnectionState
 * @typedef {{type: string, data: string, lastEventId: string, json(): any}} StreamEvent
 * @typedef {'leader' | 'follower' | 'alone' | 'discovering'} Role
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
      user: null,
      lastEventIdParam: 'lastEventId',
      pollParam: 'poll',
      backoff: {base: 1000, cap: 30000},
      connectTimeout: 10000,
      missedHeartbeats: 2.5,
      failuresBeforePolling: 5,
      pollInterval: 5000,
      pollWindow: 1500,
      pollsBeforeStreaming: 6,
      hiddenReconnectAfter: 60000,
      lastEventId: '',
      // An option given as `undefined` keeps its default.
      ...Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)),
    }
    this.lastEventId = this.options.lastEventId
    this.user = this.options.user ?? null
    this.state = /** @type {ConnectionState} */ ('connecting')
    this.listeners = new Map()
    this.stateListeners = new Set()
    this.unauthorizedListeners = new Set()
    this.userChangeListeners = new Set()
    this.seen = new Set()
    /** @type {Role} */
    this.role = 'alone'
    this.channel = null
    this.election = null
    this.attempt = null // the AbortController of the stream or poll in flight
    this.timer = null
    this.failures = 0 // failed attempts in a row (backoff)
    this.broken = 0 // streams in a row that answered but never delivered
    this.polling = false
    this.polls = 0
    this.retryMs = 3000
    this.everOpen = false
    this.closed = false
    this.hiddenSince = null

    this.wire()
    const canShare = this.options.share && typeof scope.BroadcastChannel === 'function'
    if (!canShare) {
      this.hold('alone')
    } else if (this.user !== null) {
      this.share()
    } else {
      // Whose stream is it? Only the stream can say (the cookie is not
      // readable): hold one, and share it once its `connected` event tells.
      this.hold('discovering')
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

  /**
   * Called with the new user when the stream turns out to be another
   * user's than this page's (someone logged out and in as another user in
   * another tab): the client has stopped and delivered none of it; reload
   * or show the login.
   * @param {(user: string) => void} listener
   */
  onUserChange(listener) {
    this.userChangeListeners.add(listener)
    return () => this.userChangeListeners.delete(listener)
  }

  /** Whether this tab holds the stream for the others. */
  get isLeader() {
    return this.role === 'leader'
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

  // --- sharing ------------------------------------------------------------

  /** Joins the tabs of `this.user` on this stream. */
  share() {
    // Until elected, a tab waits for the leader's events (a tab finding
    // out whose stream it holds keeps it meanwhile).
    if (this.role !== 'discovering') this.role = 'follower'
    const name = `sse-client:${encodeURIComponent(this.user)}:${this.url}`
    this.channel = new this.scope.BroadcastChannel(name)
    this.channel.onmessage = (message) => this.relayed(message.data)
    const callbacks = {lead: () => this.lead(), follow: () => this.follow()}
    const locks = this.scope.navigator?.locks
    this.election = locks?.request
      ? new LockElection(locks, name, callbacks)
      : new HeartbeatElection(this.channel, callbacks)
    this.election.join()
    // Ask the leader, if any, where the stream stands.
    this.post({kind: 'hello'})
  }

  lead() {
    if (this.closed) return
    // A tab that was finding out whose stream it holds keeps it.
    const keep = this.role === 'discovering' && this.attempt !== null
    this.role = 'leader'
    if (keep) {
      this.post({kind: 'state', state: this.state, lastEventId: this.lastEventId})
      return
    }
    this.failures = 0
    this.connect()
  }

  follow() {
    this.role = 'follower'
    this.disconnect()
  }

  /** Starts holding a stream of this tab's own. */
  hold(role) {
    this.role = role
    this.connect()
  }

  holds() {
    return this.role !== 'follower' && !this.closed
  }

  relayed(message) {
    if (!message || typeof message !== 'object' || this.closed) return
    if (message.election) {
      this.election?.receive?.(message)
      return
    }
    // Channels are per user already; a message for anyone else is dropped.
    if (message.user !== this.user) return
    switch (message.kind) {
      case 'event':
        // A tab still finding out takes them too (its own stream may not
        // have them yet); ids already seen are dropped.
        if (this.role === 'follower' || this.role === 'discovering') this.deliver(message.event)
        break
      case 'state':
        if (this.role === 'discovering') {
          // Another tab of this user holds the stream: use theirs.
          this.follow()
        }
        if (this.role === 'follower') this.setState(message.state, false)
        if (message.lastEventId) this.advance(message.lastEventId)
        break
      case 'unauthorized':
        this.unauthorized(false)
        break
      case 'user':
        this.userChanged(message.now, false)
        break
      case 'hello':
        if (this.role === 'leader') this.post({kind: 'state', state: this.state, lastEventId: this.lastEventId})
        break
      default:
    }
  }

  post(message) {
    try {
      this.channel?.postMessage({...message, user: this.user})
    } catch {
      // A closed channel (the tab is going away): nothing to tell.
    }
  }

  // --- the stream (leader, or a tab on its own) ----------------------------

  /** The stream's URL, resuming after the last id; a poll's with `poll`. */
  streamUrl(poll = false) {
    if (!this.lastEventId && !poll) return this.url
    const url = new URL(this.url)
    if (this.lastEventId) url.searchParams.set(this.options.lastEventIdParam, this.lastEventId)
    // A server that knows polls ends the response after the replay (so a
    // buffering proxy lets it through); others are read for `pollWindow`.
    if (poll && this.options.pollParam) url.searchParams.set(this.options.pollParam, '1')
    return url.toString()
  }

  connect() {
    this.disconnect()
    if (!this.holds()) return
    if (typeof this.scope.fetch !== 'function') return
    if (this.polling) {
      this.poll()
      return
    }
    this.setState(this.everOpen ? 'reconnecting' : 'connecting')
    const attempt = new AbortController()
    this.attempt = attempt
    let delivered = false
    readStream(this.scope, this.streamUrl(), {
      withCredentials: this.options.withCredentials,
      connectTimeout: this.options.connectTimeout,
      silenceAfter: (heartbeat) => heartbeat * this.options.missedHeartbeats,
      signal: attempt.signal,
      onOpen: () => {},
      onRetry: (ms) => (this.retryMs = ms),
      onEvent: (event) => {
        const heartbeat = this.fromStream(event)
        if (this.state === 'open') delivered = true
        return heartbeat
      },
    }).then((outcome) => {
      if (this.attempt !== attempt) return // superseded
      this.attempt = null
      this.streamEnded(outcome, delivered)
    })
  }

  /**
   * An event of this tab's own stream or poll. Returns the heartbeat the
   * `connected` event announces, for the silence watchdog.
   */
  fromStream(event) {
    if (this.closed || !this.holds()) return undefined
    if (event.type === 'connected') {
      const info = parseJson(event.data)
      if (!this.connectedAs(info?.user)) return undefined
      this.failures = 0
      this.broken = 0
      this.everOpen = true
      if (!this.polling) this.setState('open')
      this.received(event)
      return typeof info?.heartbeatMs === 'number' ? info.heartbeatMs : undefined
    }
    if (this.role === 'discovering' && this.user === null) {
      // Nothing of a stream is shown before it said whose it is.
      return undefined
    }
    if (this.state !== 'open' && !this.polling) {
      // A server that sends no `connected` event: its first event opens it.
      this.failures = 0
      this.broken = 0
      this.everOpen = true
      this.setState('open')
    }
    this.received(event)
    return undefined
  }

  /** Whether a stream that says it is `user`'s may be shown here. */
  connectedAs(user) {
    if (typeof user !== 'string') {
      // The server does not say: never share what cannot be checked.
      if (this.role === 'discovering') this.role = 'alone'
      return true
    }
    if (this.user === null) {
      this.user = user
      if (this.role === 'discovering') this.share()
      return true
    }
    if (user !== this.user) {
      this.userChanged(user, true)
      return false
    }
    return true
  }

  /**
   * After a stream or its attempt ended: when and how to try again.
   * `delivered`: the stream opened and said whose it is (it worked).
   */
  streamEnded(outcome, delivered) {
    if (this.closed || !this.holds()) return
    switch (outcome.kind) {
      case 'aborted':
        return
      case 'unauthorized':
        this.unauthorized(true)
        return
      case 'ended':
        if (delivered) {
          // The server ended a stream that worked (a restart, a logout
          // elsewhere, its credentials expired): come back after its retry.
          this.retry(this.retryMs)
          return
        }
        this.broken++
        break
      case 'silent':
      case 'network':
        if (delivered || outcome.kind === 'silent') {
          // It worked, then went quiet or was cut: the path, not the
          // server; come back soon, each client at its own moment.
          this.retry(fullJitter(0, this.options.backoff))
          return
        }
        break
      case 'timeout':
        // Headers but no bytes: something between buffers the stream.
        if (outcome.answered) this.broken++
        break
      default:
    }
    this.failures++
    if (this.broken >= this.options.failuresBeforePolling) {
      // Streams answer but never deliver (a buffering proxy): poll instead.
      this.polling = true
      this.polls = 0
      this.poll()
      return
    }
    const jitter = fullJitter(this.failures - 1, this.options.backoff)
    const delay = outcome.kind === 'refused' && outcome.retryAfter !== null ? Math.max(jitter, outcome.retryAfter) : jitter
    this.retry(delay)
  }

  retry(delay) {
    this.setState(this.scope.navigator?.onLine === false ? 'offline' : 'reconnecting')
    this.timer = this.scope.setTimeout(() => {
      this.timer = null
      this.connect()
    }, delay)
  }

  disconnect() {
    if (this.timer !== null) this.scope.clearTimeout(this.timer)
    this.timer = null
    const attempt = this.attempt
    this.attempt = null
    attempt?.abort()
  }

  /** One polling round: read the replay after the last id, then wait. */
  poll() {
    this.disconnect()
    if (!this.holds()) return
    this.setState('polling')
    const attempt = new AbortController()
    this.attempt = attempt
    let window = null
    readStream(this.scope, this.streamUrl(true), {
      withCredentials: this.options.withCredentials,
      connectTimeout: this.options.connectTimeout,
      silenceAfter: () => 0,
      signal: attempt.signal,
      onOpen: () => {
        window = this.scope.setTimeout(() => attempt.abort(), this.options.pollWindow)
      },
      onRetry: () => {},
      // The first heartbeat after the replay: nothing more is waiting.
      onComment: () => {
        if (this.lastEventId) attempt.abort()
      },
      onEvent: (event) => {
        this.fromStream(event)
        return undefined
      },
    }).then((outcome) => {
      if (window !== null) this.scope.clearTimeout(window)
      if (this.attempt !== attempt) return // stopped by disconnect()
      this.attempt = null
      if (this.closed || !this.holds()) return
      if (outcome.kind === 'unauthorized') {
        this.unauthorized(true)
        return
      }
      this.polls++
      let delay = this.options.pollInterval
      if (outcome.kind === 'refused' && outcome.retryAfter !== null) delay = Math.max(delay, outcome.retryAfter)
      // Now and then, see whether streaming works again.
      const tryStreaming = this.polls % this.options.pollsBeforeStreaming === 0
      this.timer = this.scope.setTimeout(() => {
        this.timer = null
        if (tryStreaming) this.streamAgain()
        else this.poll()
      }, delay)
    })
  }

  /** Leaves polling for a stream (periodically, and when back online). */
  streamAgain() {
    this.polling = false
    this.broken = 0
    this.failures = 0
    this.connect()
  }

  // --- delivery (every tab) -----------------------------------------------

  /** An event from this tab's own stream or poll: deliver and relay. */
  received(event) {
    if (this.deliver(event) && this.role === 'leader') this.post({kind: 'event', event})
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
    if (relay && this.role === 'leader') this.post({kind: 'state', state, lastEventId: this.lastEventId})
    for (const listener of this.stateListeners) listener(state)
  }

  unauthorized(relay) {
    if (relay && this.role === 'leader') this.post({kind: 'unauthorized'})
    this.disconnect()
    this.setState('closed', false)
    for (const listener of this.unauthorizedListeners) listener()
  }

  /** The stream is `now`'s, not this page's user's: stop everything. */
  userChanged(now, relay) {
    if (this.closed) return
    if (relay) this.post({kind: 'user', now})
    this.close()
    for (const listener of this.userChangeListeners) {
      try {
        listener(now)
      } catch (error) {
        console.error('[sse-client] a listener threw', error)
      }
    }
  }

  // --- page lifecycle ---------------------------------------------------

  wire() {
    const scope = this.scope
    if (typeof scope.addEventListener !== 'function') return
    this.handlers = {
      online: () => {
        if (!this.holds() || this.state === 'open' || this.state === 'closed') return
        if (this.polling) this.streamAgain()
        else this.connect()
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
          if (!this.election && this.holds()) this.connect()
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
        if (away >= this.options.hiddenReconnectAfter && this.holds() && this.state !== 'open') this.connect()
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

function parseJson(text) {
  try {
    return JSON.parse(text)
  } catch {
    return null
  }
}

/**
 * Opens (or joins) the shared stream at `url`.
 * @param {string} url
 * @param {object} [options]
 */
export function createClient(url, options) {
  return new SseClient(url, options)
}
