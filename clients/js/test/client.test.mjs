import {test, mock} from 'node:test'
import assert from 'node:assert/strict'
import {SseClient} from '../src/index.js'

/**
 * One fake browser profile: BroadcastChannels and (optionally) Web Locks
 * between its tabs, and a fake server behind `fetch` whose responses the
 * test writes by hand.
 */
function browser({locks = false} = {}) {
  const channels = new Set()
  class FakeChannel {
    constructor(name) {
      this.name = name
      this.onmessage = null
      channels.add(this)
    }
    postMessage(data) {
      const copy = structuredClone(data)
      for (const other of channels) {
        if (other !== this && other.name === this.name) setTimeout(() => other.onmessage?.({data: copy}), 0)
      }
    }
    close() {
      channels.delete(this)
    }
  }
  const lockManager = locks ? fakeLocks() : undefined
  const requests = []
  /** What the server does with a new request; by default, nothing yet. */
  let handler = () => {}
  async function fetch(url, init) {
    const request = new FakeRequest(url, init)
    requests.push(request)
    handler(request)
    return request.response
  }
  const scope = () => ({
    location: {href: 'http://app.test/'},
    navigator: {onLine: true, locks: lockManager},
    BroadcastChannel: FakeChannel,
    fetch,
    setTimeout: (f, ms) => setTimeout(f, ms),
    clearTimeout: (t) => clearTimeout(t),
  })
  return {
    scope,
    requests,
    channels,
    serve: (f) => (handler = f),
    /** Requests whose stream is still open. */
    open: () => requests.filter((r) => r.streaming && !r.done),
  }
}

/** A request the test answers: `stream()`, then `send()` and `end()`. */
class FakeRequest {
  constructor(url, init) {
    this.url = url
    this.init = init
    this.done = false
    this.streaming = false
    this.chunks = []
    this.waiting = null
    this.response = new Promise((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
    init.signal.addEventListener('abort', () => this.abort())
  }
  /** Answers with an event stream (the server's first bytes follow). */
  stream() {
    this.streaming = true
    const request = this
    this.resolve({
      status: 200,
      ok: true,
      headers: new Map([['content-type', 'text/event-stream']]),
      body: {
        getReader: () => ({read: () => request.read()}),
        cancel: async () => request.abort(),
      },
    })
    return this
  }
  /** Answers with an error status. */
  refuse(status, headers = {}) {
    this.done = true
    this.resolve({status, ok: false, headers: new Map(Object.entries(headers)), body: {cancel: async () => {}}})
  }
  /** Fails the request as a network error would. */
  fail() {
    this.done = true
    this.reject(new TypeError('network error'))
    this.waiting?.reject(new TypeError('network error'))
  }
  connected(user, {id = 'abcdefgh.0', heartbeatMs = 15000} = {}) {
    return this.send(`retry: 1000\nid: ${id}\nevent: connected\ndata: ${JSON.stringify({connectionId: 'c', heartbeatMs, user})}\n\n`)
  }
  notification(id, data = '{}') {
    return this.send(`id: ${id}\nevent: notification\ndata: ${data}\n\n`)
  }
  send(text) {
    const bytes = new TextEncoder().encode(text)
    if (this.waiting) {
      this.waiting.resolve({value: bytes, done: false})
      this.waiting = null
    } else this.chunks.push(bytes)
    return this
  }
  end() {
    this.done = true
    if (this.waiting) this.waiting.resolve({value: undefined, done: true})
    this.waiting = null
  }
  read() {
    if (this.chunks.length > 0) return Promise.resolve({value: this.chunks.shift(), done: false})
    if (this.done) return Promise.resolve({value: undefined, done: true})
    return new Promise((resolve, reject) => (this.waiting = {resolve, reject}))
  }
  abort() {
    if (this.done) return
    this.done = true
    const error = new DOMException('aborted', 'AbortError')
    this.reject(error)
    this.waiting?.reject(error)
    this.waiting = null
  }
}

/** Web Locks: one holder per name, the others queue; a holder's release passes it on. */
function fakeLocks() {
  const queues = new Map()
  return {
    request(name, options, callback) {
      return new Promise((resolve) => {
        const queue = queues.get(name) ?? []
        queues.set(name, queue)
        const entry = {
          grant: async () => {
            if (options.signal?.aborted) return next()
            resolve(await callback({name}))
            next()
          },
        }
        const next = () => {
          queue.shift()
          queue[0]?.grant()
        }
        options.signal?.addEventListener('abort', () => {
          const at = queue.indexOf(entry)
          if (at > 0) queue.splice(at, 1)
        })
        queue.push(entry)
        if (queue.length === 1) setTimeout(() => entry.grant(), 0)
      })
    },
  }
}

async function advance(ms) {
  for (let i = 0; i < ms; i += 25) {
    mock.timers.tick(25)
    for (let j = 0; j < 8; j++) await new Promise((resolve) => setImmediate(resolve))
  }
}

function withTimers(body) {
  return async () => {
    mock.timers.enable({apis: ['setTimeout', 'setInterval']})
    try {
      await body()
    } finally {
      mock.timers.reset()
    }
  }
}

test(
  'one stream for every tab of a user; a takeover resumes from the last id, losing and repeating nothing',
  withTimers(async () => {
    const b = browser()
    b.serve((r) => r.stream().connected('ada'))
    const tabs = [0, 1, 2].map(() => new SseClient('/events', {scope: b.scope(), user: 'ada'}))
    const seen = tabs.map(() => [])
    tabs.forEach((tab, i) => tab.on('notification', (e) => seen[i].push(e.lastEventId)))
    await advance(2500)
    assert.equal(b.open().length, 1, 'exactly one stream among three tabs')
    assert.equal(tabs.filter((t) => t.isLeader).length, 1)
    const first = b.open()[0]
    first.notification('abcdefgh.1').notification('abcdefgh.2')
    await advance(100)
    for (const ids of seen) assert.deepEqual(ids, ['abcdefgh.1', 'abcdefgh.2'])
    assert.equal(first.init.headers.accept, 'text/event-stream')

    // The leader closes; another tab takes over within 2 s and resumes
    // after the last id any tab saw.
    const leader = tabs.findIndex((t) => t.isLeader)
    tabs[leader].close()
    await advance(2000)
    const next = b.open()
    assert.equal(next.length, 1, 'one stream again')
    assert.match(next[0].url, /lastEventId=abcdefgh\.2$/)
    // The server replays from there; a repeated id is dropped.
    next[0].notification('abcdefgh.2').notification('abcdefgh.3')
    await advance(100)
    tabs.forEach((tab, i) => {
      if (i !== leader) assert.deepEqual(seen[i], ['abcdefgh.1', 'abcdefgh.2', 'abcdefgh.3'])
    })
    tabs.forEach((t) => t.close())
  }),
)

test(
  "tabs of two users in one browser never share a stream, and neither sees the other's events",
  withTimers(async () => {
    for (const locks of [false, true]) {
      const b = browser({locks})
      // The cookie decides whose stream the server opens: as in one
      // profile, it is the latest login's.
      let cookie = 'ada'
      b.serve((r) => r.stream().connected(cookie))
      const ada = new SseClient('/events', {scope: b.scope(), user: 'ada'})
      await advance(2500)
      cookie = 'bob'
      const bob = new SseClient('/events', {scope: b.scope(), user: 'bob'})
      const later = new SseClient('/events', {scope: b.scope(), user: 'bob'})
      await advance(2500)
      assert.equal(b.open().length, 2, `one stream per user (locks: ${locks})`)
      const got = {ada: [], bob: [], later: []}
      ada.on('notification', (e) => got.ada.push(e.data))
      bob.on('notification', (e) => got.bob.push(e.data))
      later.on('notification', (e) => got.later.push(e.data))
      const [adaStream, bobStream] = b.open()
      adaStream.notification('abcdefgh.1', '"for ada"')
      bobStream.notification('abcdefgh.2', '"for bob"')
      await advance(100)
      assert.deepEqual(got, {ada: ['"for ada"'], bob: ['"for bob"'], later: ['"for bob"']})
      for (const c of [ada, bob, later]) c.close()
    }
  }),
)

test(
  'without a user option, each tab learns whose stream it holds before sharing it',
  withTimers(async () => {
    const b = browser({locks: true})
    let cookie = 'ada'
    b.serve((r) => r.stream().connected(cookie))
    const first = new SseClient('/events', {scope: b.scope()})
    await advance(500)
    const second = new SseClient('/events', {scope: b.scope()})
    await advance(500)
    assert.equal(b.open().length, 1, "the second tab of ada's uses the first tab's stream")
    assert.equal(second.user, 'ada')
    cookie = 'bob'
    const other = new SseClient('/events', {scope: b.scope()})
    await advance(500)
    assert.equal(b.open().length, 2, "bob's tab holds a stream of its own")
    const got = {first: [], second: [], other: []}
    first.on('notification', (e) => got.first.push(e.data))
    second.on('notification', (e) => got.second.push(e.data))
    other.on('notification', (e) => got.other.push(e.data))
    b.open()[0].notification('abcdefgh.1', '"for ada"')
    b.open()[1].notification('abcdefgh.2', '"for bob"')
    await advance(100)
    assert.deepEqual(got, {first: ['"for ada"'], second: ['"for ada"'], other: ['"for bob"']})
    for (const c of [first, second, other]) c.close()
  }),
)

test(
  'when the cookie changes hands, every tab of the old user stops and shows nothing of the new one',
  withTimers(async () => {
    const b = browser()
    let cookie = 'ada'
    b.serve((r) => r.stream().connected(cookie))
    const tabs = [0, 1].map(() => new SseClient('/events', {scope: b.scope(), user: 'ada'}))
    const changes = [[], []]
    const shown = [[], []]
    tabs.forEach((tab, i) => {
      tab.onUserChange((user) => changes[i].push(user))
      tab.on('notification', (e) => shown[i].push(e.data))
      tab.on('connected', (e) => shown[i].push(`connected ${JSON.parse(e.data).user}`))
    })
    await advance(2500)
    // Logout as ada and login as bob in a third tab: ada's stream ends, and
    // its reconnect carries bob's cookie.
    cookie = 'bob'
    b.serve((r) => r.stream().connected(cookie).notification('abcdefgh.9', '"for bob"'))
    b.open()[0].end()
    await advance(2000)
    assert.deepEqual(changes, [['bob'], ['bob']])
    assert.deepEqual(shown, [['connected ada'], ['connected ada']])
    assert.deepEqual(
      tabs.map((t) => t.state),
      ['closed', 'closed'],
    )
    await advance(30000)
    assert.equal(b.open().length, 0, 'nothing reconnects')
  }),
)

test(
  'a relayed message for another user is dropped',
  withTimers(async () => {
    const b = browser()
    b.serve((r) => r.stream().connected('ada'))
    const leader = new SseClient('/events', {scope: b.scope(), user: 'ada'})
    await advance(2500)
    const follower = new SseClient('/events', {scope: b.scope(), user: 'ada'})
    const got = []
    follower.on('notification', (e) => got.push(e.data))
    await advance(500)
    const channel = [...b.channels].find((c) => c.name.includes('ada'))
    const forged = {kind: 'event', user: 'mallory', event: {type: 'notification', data: '"forged"', id: 'abcdefgh.5'}}
    channel.onmessage({data: forged})
    channel.onmessage({data: {kind: 'event', event: {type: 'notification', data: '"no user"', id: 'abcdefgh.6'}}})
    await advance(50)
    assert.deepEqual(got, [])
    leader.close()
    follower.close()
  }),
)

test(
  'a stream that goes silent is replaced after about 2.5 missed heartbeats',
  withTimers(async () => {
    const b = browser()
    b.serve((r) => r.stream().connected('ada', {heartbeatMs: 1000}))
    const client = new SseClient('/events', {scope: b.scope(), share: false})
    await advance(100)
    assert.equal(b.requests.length, 1)
    await advance(2000)
    assert.equal(b.requests.length, 1, 'not before 2.5 heartbeats')
    b.requests[0].send(': heartbeat\n\n')
    await advance(2000)
    assert.equal(b.requests.length, 1, 'a heartbeat restarts the wait')
    await advance(2000)
    assert.equal(b.requests.length, 2, 'silent for 2.5 s: a new stream')
    assert.ok(b.requests[0].done, 'the silent one is closed')
    client.close()
  }),
)

test(
  'a connect that gets no answer times out and is tried again',
  withTimers(async () => {
    const b = browser()
    const client = new SseClient('/events', {scope: b.scope(), share: false, connectTimeout: 5000})
    await advance(4900)
    assert.equal(b.requests.length, 1)
    await advance(200)
    assert.ok(b.requests[0].done, 'the unanswered request is aborted')
    b.serve((r) => r.stream().connected('ada'))
    await advance(1100)
    assert.equal(b.requests.length, 2, 'tried again after a jittered backoff')
    assert.equal(client.state, 'open')
    client.close()
  }),
)

test(
  'a short 5xx outage keeps streaming: Retry-After is honoured, no polling, back as soon as the server is',
  withTimers(async () => {
    const b = browser()
    b.serve((r) => r.refuse(503, {'retry-after': '4'}))
    const states = []
    const client = new SseClient('/events', {scope: b.scope(), share: false, failuresBeforePolling: 2})
    client.onStateChange((s) => states.push(s))
    await advance(3900)
    assert.equal(b.requests.length, 1, 'nothing before Retry-After')
    await advance(200)
    assert.equal(b.requests.length, 2)
    b.serve((r) => r.stream().connected('ada'))
    await advance(4200)
    assert.equal(client.state, 'open')
    assert.ok(!states.includes('polling'), states.join(' '))
    client.close()
  }),
)

test(
  'network failures back off with full jitter instead of a fixed delay',
  withTimers(async () => {
    const random = mock.method(Math, 'random', () => 0.999)
    try {
      const b = browser()
      b.serve((r) => setTimeout(() => r.fail(), 0))
      const client = new SseClient('/events', {scope: b.scope(), share: false, backoff: {base: 1000, cap: 8000}})
      const at = []
      let now = 0
      for (let t = 0; t < 20000; t += 25) {
        await advance(25)
        now += 25
        while (at.length < b.requests.length) at.push(now)
      }
      const gaps = at.slice(1).map((t, i) => t - at[i])
      // With the jitter at its top: about 1, 2, 4, 8, 8 s.
      assert.ok(gaps.length >= 4, gaps.join(' '))
      for (const [gap, bound] of gaps.slice(0, 4).map((g, i) => [g, 1000 * 2 ** i])) {
        assert.ok(gap >= bound - 100 && gap <= bound + 200, `${gaps.join(' ')}`)
      }
      client.close()
    } finally {
      random.mock.restore()
    }
  }),
)

test(
  'a 401 stops reconnecting and tells every tab to log in',
  withTimers(async () => {
    const b = browser()
    b.serve((r) => r.stream().connected('ada'))
    const tabs = [0, 1].map(() => new SseClient('/events', {scope: b.scope(), user: 'ada'}))
    const told = [0, 0]
    tabs.forEach((tab, i) => tab.onUnauthorized(() => told[i]++))
    await advance(2500)
    b.serve((r) => r.refuse(401))
    b.open()[0].end()
    await advance(1500)
    assert.deepEqual(told, [1, 1])
    await advance(60000)
    assert.equal(b.open().length, 0, 'no reconnect after a 401')
    assert.deepEqual(
      tabs.map((t) => t.state),
      ['closed', 'closed'],
    )
  }),
)

test(
  'streams that answer but never deliver (a buffering proxy) fall back to polling, and streaming returns',
  withTimers(async () => {
    const b = browser()
    // Headers, then nothing.
    b.serve((r) => r.stream())
    const client = new SseClient('/events', {
      scope: b.scope(),
      share: false,
      connectTimeout: 1000,
      failuresBeforePolling: 2,
      backoff: {base: 10, cap: 10},
      pollInterval: 1000,
      pollsBeforeStreaming: 3,
    })
    await advance(2500)
    assert.equal(client.state, 'polling')
    assert.match(b.requests.at(-1).url, /[?&]poll=1/, 'a poll asks the server to end after the replay')
    // The poll gets the replay and a heartbeat; then streaming is tried again.
    b.serve((r) => r.stream().connected('ada').notification('abcdefgh.1').send(': heartbeat\n\n'))
    const got = []
    client.on('notification', (e) => got.push(e.lastEventId))
    await advance(4000)
    assert.deepEqual(got, ['abcdefgh.1'])
    assert.equal(client.state, 'open', 'streaming again after a few polls')
    client.close()
  }),
)

test(
  'events without an id of their own are never taken for repeats',
  withTimers(async () => {
    const b = browser()
    b.serve((r) => r.stream().connected('ada'))
    const client = new SseClient('/events', {scope: b.scope(), share: false})
    const got = []
    client.on('notification', (e) => got.push(`n ${e.lastEventId}`))
    client.on('presence', (e) => got.push(`p ${e.data}`))
    await advance(100)
    b.open()[0].send('id: abcdefgh.4\nevent: notification\ndata: {}\n\nevent: presence\ndata: a\n\nevent: presence\ndata: b\n\n')
    b.open()[0].notification('abcdefgh.5')
    await advance(50)
    assert.deepEqual(got, ['n abcdefgh.4', 'p a', 'p b', 'n abcdefgh.5'])
    client.close()
  }),
)
