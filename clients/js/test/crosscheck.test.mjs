// Our parser against an independent implementation (npm's
// eventsource-parser) on generated streams: every field kind, every line
// ending, comments, BOM-free junk lines, in random chunkings.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {createParser} from 'eventsource-parser'
import {EventStreamParser} from '../src/parser.js'

/** A small seeded PRNG (mulberry32), so that a failure replays. */
function rng(seed) {
  return () => {
    seed |= 0
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function stream(random) {
  const pick = (items) => items[Math.floor(random() * items.length)]
  const word = () => pick(['', 'a', 'hello', ' lead', 'tail ', 'x:y', '{"k":1}', 'é✓', 'data', 'id'])
  const eol = () => pick(['\n', '\r\n', '\r'])
  let text = ''
  const blocks = 1 + Math.floor(random() * 12)
  for (let b = 0; b < blocks; b++) {
    const lines = Math.floor(random() * 5)
    for (let l = 0; l < lines; l++) {
      const field = pick(['data', 'data', 'event', 'id', 'retry', ':', 'junk', 'data'])
      if (field === ':') text += `:${word()}${eol()}`
      else if (field === 'retry') text += `retry: ${pick(['100', '3000', 'x'])}${eol()}`
      else text += `${field}${pick([': ', ':', ''])}${word()}${eol()}`
    }
    text += eol()
  }
  return text
}

function ours(chunks) {
  const parser = new EventStreamParser()
  const events = []
  for (const chunk of chunks) {
    for (const item of parser.feed(chunk)) {
      if (item.kind === 'event') events.push({type: item.event.type, data: item.event.data, id: item.event.id})
    }
  }
  return events
}

function theirs(chunks) {
  const events = []
  let lastEventId = ''
  const parser = createParser({
    onId(id) {
      lastEventId = id
    },
    onEvent(event) {
      events.push({type: event.event || 'message', data: event.data, id: lastEventId})
    },
  })
  for (const chunk of chunks) parser.feed(chunk)
  return events
}

test('our parser and eventsource-parser agree on 2,000 generated streams in random chunks', () => {
  const random = rng(20261124)
  for (let i = 0; i < 2000; i++) {
    const text = stream(random)
    const chunks = []
    for (let at = 0; at < text.length; ) {
      const size = 1 + Math.floor(random() * 8)
      chunks.push(text.slice(at, at + size))
      at += size
    }
    assert.deepEqual(ours(chunks), theirs([text]), `stream ${i}: ${JSON.stringify(text)}`)
  }
})
