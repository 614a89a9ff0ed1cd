import {test, mock} from 'node:test'
import assert from 'node:assert/strict'
import {SseClient} from '../src/index.js'

/** One fake browser: BroadcastChannels between its tabs, EventSources to inspect. */
function browser({status = 200} = {}) {
  const channels = new Set()
  const sources = []
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
  class FakeEventSource {
    constructor(url) {
      this.url = url
      this.readyState = 0
      this.listeners = {}
      sources.push(this)
    }
    addEventListener(type, f) {
      ;(this.listeners[type] ??= []).push(f)
    }
    emit(type, data, id) {
      for (const f of this.listeners[type] ?? []) f({data, lastEventId: id})
    }
    close() {
      this.readyState = 2
      this.closed = true
    }
  }
  const scope = () => ({
    location: {href: 'http://app.test/'},
    navigator: {onLine: true},
    BroadcastChannel: FakeChannel,
    EventSource: FakeEventSource,
    fetch: async () => ({status, ok: status === 200, body: null}),
    setTimeout: (f, ms) => setTimeout(f, ms),
    clearTimeout: (t) => clearTimeout(t),
  })
  return {scope, sources, open: () => sources.filter((s) => !s.closed)}
}

async function advance(ms) {
  for (let i = 0; i < ms; i += 25) {
    mock.timers.tick(25)
    for (let j = 0; j < 5; j++) await new Promise((resolve) => setImmediate(resolve))
  }
}

test('one stream for every tab; a takeover resumes from the last id, losing and repeating nothing', async () => {
  mock.timers.enable({apis: ['setTimeout', 'setInterval']})
  try {
    const b = browser()
    const tabs = [0, 1, 2].map(() => new SseClient('/events', {scope: b.scope()}))
    const seen = tabs.map(() => [])
    tabs.forEach((tab, i) => tab.on('notification', (e) => seen[i].push(e.lastEventId)))
    await advance(2500)
    assert.equal(b.open().length, 1, 'exactly one EventSource among three tabs')
    assert.equal(tabs.filter((t) => t.isLeader).length, 1)
    const first = b.open()[0]
    first.emit('notification', '{"n":1}', 'abcdefgh.1')
    first.emit('notification', '{"n":2}', 'abcdefgh.2')
    await advance(100)
    for (const ids of seen) assert.deepEqual(ids, ['abcdefgh.1', 'abcdefgh.2'])

    // The leader closes; another tab takes over within 2 s and resumes
    // after the last id any tab saw.
    const leader = tabs.findIndex((t) => t.isLeader)
    tabs[leader].close()
    await advance(2000)
    const next = b.open()
    assert.equal(next.length, 1, 'one stream again')
    assert.match(next[0].url, /lastEventId=abcdefgh\.2$/)
    // The server replays from there; a repeated id is dropped.
    next[0].emit('notification', '{"n":2}', 'abcdefgh.2')
    next[0].emit('notification', '{"n":3}', 'abcdefgh.3')
    await advance(100)
    tabs.forEach((tab, i) => {
      if (i !== leader) assert.deepEqual(seen[i], ['abcdefgh.1', 'abcdefgh.2', 'abcdefgh.3'])
    })
    tabs.forEach((t) => t.close())
  } finally {
    mock.timers.reset()
  }
})

test('a 401 stops reconnecting and tells every tab to log in', async () => {
  mock.timers.enable({apis: ['setTimeout', 'setInterval']})
  try {
    const b = browser({status: 401})
    const tabs = [0, 1].map(() => new SseClient('/events', {scope: b.scope()}))
    const told = [0, 0]
    tabs.forEach((tab, i) => tab.onUnauthorized(() => told[i]++))
    await advance(2500)
    const source = b.open()[0]
    source.readyState = 2
    source.onerror()
    await advance(200)
    assert.deepEqual(told, [1, 1])
    await advance(60000)
    assert.equal(b.open().length, 0, 'no reconnect after a 401')
    assert.deepEqual(tabs.map((t) => t.state), ['closed', 'closed'])
  } finally {
    mock.timers.reset()
  }
})

test('other failures back off with jitter, then fall back to polling', async () => {
  mock.timers.enable({apis: ['setTimeout', 'setInterval']})
  try {
    const b = browser({status: 503})
    const client = new SseClient('/events', {scope: b.scope(), share: false, failuresBeforePolling: 3, backoff: {base: 100, cap: 1000}})
    const states = []
    client.onStateChange((s) => states.push(s))
    for (let i = 0; i < 3; i++) {
      const source = b.open()[0]
      assert.ok(source, `attempt ${i} opened a stream`)
      source.readyState = 2
      source.onerror()
      await advance(1200)
    }
    assert.equal(client.state, 'polling')
    assert.ok(states.includes('reconnecting'))
    client.close()
  } finally {
    mock.timers.reset()
  }
})

test('events without an id of their own are never taken for repeats', async () => {
  mock.timers.enable({apis: ['setTimeout', 'setInterval']})
  try {
    const b = browser()
    const client = new SseClient('/events', {scope: b.scope(), share: false})
    const got = []
    client.on('notification', (e) => got.push(`n ${e.lastEventId}`))
    client.on('presence', (e) => got.push(`p ${e.data}`))
    await advance(100)
    const source = b.open()[0]
    // As EventSource reports them: an id-less event repeats the last id.
    source.emit('notification', '{}', 'abcdefgh.4')
    source.emit('presence', 'a', 'abcdefgh.4')
    source.emit('presence', 'b', 'abcdefgh.4')
    source.emit('notification', '{}', 'abcdefgh.5')
    await advance(50)
    assert.deepEqual(got, ['n abcdefgh.4', 'p a', 'p b', 'n abcdefgh.5'])
    client.close()
  } finally {
    mock.timers.reset()
  }
})
