import {test, mock} from 'node:test'
import assert from 'node:assert/strict'
import {HeartbeatElection} from '../src/election.js'

/** A BroadcastChannel among `tabs`: a message reaches every other tab. */
function bus() {
  const tabs = []
  return {
    tabs,
    channel(self) {
      return {postMessage: (message) => queueMicrotask(() => tabs.filter((t) => t !== self.tab && !t.gone).forEach((t) => t.election.receive(message)))}
    },
  }
}

function tab(network, id) {
  const self = {tab: null}
  const t = {id, leading: false, gone: false, leads: 0}
  const channel = network.channel(self)
  t.election = new HeartbeatElection(channel, {lead: () => ((t.leading = true), t.leads++), follow: () => (t.leading = false)}, {
    id,
    setTimeout,
    clearTimeout,
    setInterval,
    clearInterval,
  })
  self.tab = t
  network.tabs.push(t)
  return t
}

async function advance(ms) {
  for (let i = 0; i < ms; i += 50) {
    mock.timers.tick(50)
    await new Promise((resolve) => setImmediate(resolve))
  }
}

test('exactly one of several tabs leads, and another takes over within 2 s when it dies', async () => {
  mock.timers.enable({apis: ['setTimeout', 'setInterval']})
  try {
    const network = bus()
    const tabs = ['c', 'a', 'd', 'b'].map((id) => tab(network, id))
    tabs.forEach((t) => t.election.join())
    await advance(3000)
    assert.equal(tabs.filter((t) => t.leading).length, 1, 'one leader')
    const leader = tabs.find((t) => t.leading)
    // Stable: nobody else claims while the leader beats.
    await advance(5000)
    assert.equal(tabs.filter((t) => t.leading).length, 1)
    assert.equal(leader.leads, 1)

    // The leader's tab crashes (no goodbye): another leads within 2 s.
    leader.gone = true
    leader.election.stopTimers()
    await advance(2000)
    const survivors = tabs.filter((t) => !t.gone)
    assert.equal(survivors.filter((t) => t.leading).length, 1, 'a new leader within 2 s')

    // A leader that closes cleanly resigns: the next takes over at once.
    const next = survivors.find((t) => t.leading)
    next.election.leave()
    next.gone = true
    await advance(400)
    assert.equal(tabs.filter((t) => !t.gone && t.leading).length, 1, 'a new leader right after a resignation')
  } finally {
    mock.timers.reset()
  }
})

test('two leaders (a healed split) settle on the smaller id', async () => {
  mock.timers.enable({apis: ['setTimeout', 'setInterval']})
  try {
    const network = bus()
    const a = tab(network, 'a')
    const b = tab(network, 'b')
    a.election.lead()
    b.election.lead()
    await advance(1000)
    assert.equal(a.leading, true)
    assert.equal(b.leading, false)
  } finally {
    mock.timers.reset()
  }
})
