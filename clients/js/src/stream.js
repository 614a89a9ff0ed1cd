// One connection to the stream, over fetch: read until it ends, and say how.
//
// Why fetch and not EventSource: an EventSource hides heartbeat comments
// (so a stream that goes silent with its socket open is never noticed),
// has no connect timeout (a reconnect that gets no answer waits forever),
// hides the status and Retry-After of a refusal, and retries network
// failures on its own fixed schedule, every client at once. Reading the
// body ourselves, with the WHATWG parser (parser.js), gives each of these
// back to the client.

import {EventStreamParser} from './parser.js'

/**
 * @typedef {{type: string, data: string, id: string}} ParsedEvent
 * @typedef {'opened' | 'event' | 'retry'} ItemKind
 * @typedef {(
 *   {kind: 'ended', opened: boolean} |
 *   {kind: 'refused', status: number, retryAfter: number | null} |
 *   {kind: 'unauthorized'} |
 *   {kind: 'timeout', answered: boolean} |
 *   {kind: 'silent'} |
 *   {kind: 'network', opened: boolean} |
 *   {kind: 'aborted'}
 * )} Outcome
 */

/**
 * Reads the event stream at `url` until it ends.
 *
 * @param {object} scope the page's globals (fetch, setTimeout, clearTimeout)
 * @param {string} url
 * @param {object} options
 * @param {boolean} options.withCredentials
 * @param {number} options.connectTimeout ms until the stream answers and sends its first bytes
 * @param {(ms: number) => number} options.silenceAfter how long a stream may stay silent, given the heartbeat it announced (0: none)
 * @param {AbortSignal} options.signal aborts the stream (the outcome is then `aborted`)
 * @param {(event: ParsedEvent) => (number | void)} options.onEvent each event; a `connected` one may return its heartbeat in ms
 * @param {(ms: number) => void} options.onRetry each `retry:` field
 * @param {() => void} [options.onComment] each comment (a heartbeat)
 * @param {() => void} options.onOpen the stream answered with an event stream and sent its first bytes
 * @returns {Promise<Outcome>}
 */
export async function readStream(scope, url, options) {
  const abort = new AbortController()
  const stop = () => abort.abort()
  if (options.signal.aborted) return {kind: 'aborted'}
  options.signal.addEventListener('abort', stop)
  let why = null // 'timeout' | 'silent', when we aborted it ourselves
  let answered = false // response headers arrived
  let opened = false // and the first bytes of the body
  let watchdog = scope.setTimeout(() => {
    why = 'timeout'
    abort.abort()
  }, options.connectTimeout)
  let silence = 0
  const rearm = () => {
    scope.clearTimeout(watchdog)
    watchdog = silence > 0 ? scope.setTimeout(() => ((why = 'silent'), abort.abort()), silence) : null
  }
  try {
    const response = await scope.fetch(url, {
      credentials: options.withCredentials ? 'include' : 'same-origin',
      headers: {accept: 'text/event-stream'},
      cache: 'no-store',
      signal: abort.signal,
    })
    answered = true
    if (response.status === 401) {
      cancel(response)
      return {kind: 'unauthorized'}
    }
    const type = response.headers?.get?.('content-type') ?? ''
    if (!response.ok || !/^text\/event-stream\b/i.test(type) || !response.body?.getReader) {
      cancel(response)
      return {kind: 'refused', status: response.status, retryAfter: retryAfterMs(response)}
    }
    const reader = response.body.getReader()
    const decoder = new TextDecoder()
    const parser = new EventStreamParser()
    for (;;) {
      const {value, done} = await reader.read()
      if (done) return {kind: 'ended', opened}
      if (!opened) {
        opened = true
        options.onOpen()
      }
      rearm()
      for (const item of parser.feed(decoder.decode(value, {stream: true}))) {
        if (item.kind === 'retry') options.onRetry(item.ms)
        if (item.kind === 'comment') options.onComment?.()
        if (item.kind !== 'event') continue
        const heartbeat = options.onEvent({...item.event, id: ownId(parser, item.event.id)})
        if (typeof heartbeat === 'number' && heartbeat > 0) {
          silence = options.silenceAfter(heartbeat)
          rearm()
        }
      }
    }
  } catch {
    if (options.signal.aborted) return {kind: 'aborted'}
    if (why === 'timeout') return {kind: 'timeout', answered}
    if (why === 'silent') return {kind: 'silent'}
    return {kind: 'network', opened}
  } finally {
    scope.clearTimeout(watchdog)
    options.signal.removeEventListener('abort', stop)
    abort.abort()
  }
}

/** `Retry-After` in ms: delta-seconds or an HTTP date; null when absent. */
export function retryAfterMs(response, now = Date.now()) {
  const value = response.headers?.get?.('retry-after')
  if (!value) return null
  if (/^[0-9]+$/.test(value.trim())) return Number(value.trim()) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? null : Math.max(0, at - now)
}

function cancel(response) {
  try {
    response.body?.cancel?.().catch?.(() => {})
  } catch {
    // Nothing to release.
  }
}

/**
 * The id of an event itself. An event's id as the WHATWG algorithm reports
 * it is the stream's last id so far: an event without an id repeats the one
 * before it. Streams never send one id twice, so a repeat means "no id of
 * its own".
 * @param {object} stream the parser the event came from
 * @param {string} lastEventId
 */
export function ownId(stream, lastEventId) {
  const previous = lastIds.get(stream) ?? ''
  lastIds.set(stream, lastEventId)
  return lastEventId === previous ? '' : lastEventId
}

const lastIds = new WeakMap()
