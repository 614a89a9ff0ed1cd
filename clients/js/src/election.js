// Which tab holds the stream. With the Web Locks API the browser decides:
// the tab holding the lock leads, the others wait in its queue, and a tab
// that closes or crashes releases it at once. Without Web Locks, tabs elect
// over a BroadcastChannel: the leader sends a heartbeat; a tab that hears
// none for `timeout` claims the lead, and of two claimants the smaller id
// wins.

/**
 * @typedef {object} ElectionCallbacks
 * @property {() => void} lead   this tab now leads
 * @property {() => void} follow this tab no longer leads
 */

/** Leadership through `navigator.locks`. */
export class LockElection {
  /**
   * @param {LockManager} locks
   * @param {string} name
   * @param {ElectionCallbacks} callbacks
   */
  constructor(locks, name, callbacks) {
    this.locks = locks
    this.name = name
    this.callbacks = callbacks
    this.abort = null
    this.release = null
    this.leading = false
  }

  join() {
    if (this.abort) return
    const abort = new AbortController()
    this.abort = abort
    this.locks
      .request(this.name, {signal: abort.signal}, () => {
        if (abort.signal.aborted) return undefined
        this.leading = true
        this.callbacks.lead()
        return new Promise((resolve) => {
          this.release = resolve
        })
      })
      .catch(() => {})
  }

  /** Gives up the lead (or the place in the queue). */
  leave() {
    if (this.abort) this.abort.abort()
    this.abort = null
    if (this.release) this.release()
    this.release = null
    if (this.leading) {
      this.leading = false
      this.callbacks.follow()
    }
  }
}

/**
 * Leadership over a BroadcastChannel-like `channel` (`postMessage`, and
 * `receive(message)` called for what others post), with injected timers so
 * that it can be driven by fake clocks.
 */
export class HeartbeatElection {
  /**
   * @param {{postMessage(message: unknown): void}} channel
   * @param {ElectionCallbacks} callbacks
   * @param {{id?: string, interval?: number, timeout?: number, settle?: number,
   *   setTimeout?: typeof setTimeout, clearTimeout?: typeof clearTimeout,
   *   setInterval?: typeof setInterval, clearInterval?: typeof clearInterval}} [options]
   */
  constructor(channel, callbacks, options = {}) {
    this.channel = channel
    this.callbacks = callbacks
    this.id = options.id ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`
    this.interval = options.interval ?? 500
    this.timeout = options.timeout ?? 1500
    this.settle = options.settle ?? 200
    this.timers = {
      setTimeout: options.setTimeout ?? ((f, ms) => setTimeout(f, ms)),
      clearTimeout: options.clearTimeout ?? ((t) => clearTimeout(t)),
      setInterval: options.setInterval ?? ((f, ms) => setInterval(f, ms)),
      clearInterval: options.clearInterval ?? ((t) => clearInterval(t)),
    }
    /** 'idle' | 'following' | 'claiming' | 'leading' */
    this.state = 'idle'
    this.watchdog = null
    this.beat = null
    this.claimTimer = null
  }

  join() {
    if (this.state !== 'idle') return
    this.state = 'following'
    this.arm()
  }

  leave() {
    const wasLeading = this.state === 'leading'
    if (wasLeading) this.channel.postMessage({election: 'resign', id: this.id})
    this.stopTimers()
    this.state = 'idle'
    if (wasLeading) this.callbacks.follow()
  }

  /** Feed every message another tab posted on the channel. */
  receive(message) {
    if (!message || typeof message !== 'object' || !message.election) return
    const {election: kind, id} = message
    if (id === this.id) return
    if (kind === 'beat' || kind === 'claim') {
      if (this.state === 'leading' || this.state === 'claiming') {
        // Two leaders (or claimants): the smaller id keeps it.
        if (id < this.id) this.stepDown()
        else if (this.state === 'leading') this.channel.postMessage({election: 'beat', id: this.id})
        return
      }
      if (this.state === 'following') this.arm()
    } else if (kind === 'resign' && this.state === 'following') {
      this.claim()
    }
  }

  arm() {
    if (this.watchdog !== null) this.timers.clearTimeout(this.watchdog)
    this.watchdog = this.timers.setTimeout(() => {
      this.watchdog = null
      if (this.state === 'following') this.claim()
    }, this.timeout)
  }

  claim() {
    this.state = 'claiming'
    this.channel.postMessage({election: 'claim', id: this.id})
    this.claimTimer = this.timers.setTimeout(() => {
      this.claimTimer = null
      if (this.state === 'claiming') this.lead()
    }, this.settle)
  }

  lead() {
    this.state = 'leading'
    this.channel.postMessage({election: 'beat', id: this.id})
    this.beat = this.timers.setInterval(() => this.channel.postMessage({election: 'beat', id: this.id}), this.interval)
    this.callbacks.lead()
  }

  stepDown() {
    const wasLeading = this.state === 'leading'
    this.stopTimers()
    this.state = 'following'
    this.arm()
    if (wasLeading) this.callbacks.follow()
  }

  stopTimers() {
    if (this.watchdog !== null) this.timers.clearTimeout(this.watchdog)
    if (this.claimTimer !== null) this.timers.clearTimeout(this.claimTimer)
    if (this.beat !== null) this.timers.clearInterval(this.beat)
    this.watchdog = this.claimTimer = this.beat = null
  }
}
