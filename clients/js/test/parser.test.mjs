import {test} from 'node:test'
import assert from 'node:assert/strict'
import {EventStreamParser} from '../src/parser.js'

const STREAM = 'retry: 3000\n\n: hi\n\nevent: connected\nid: e.1\ndata: {"a":1}\n\ndata: two\ndata: lines\n\nid\ndata: x\r\n\r\nevent: n\rdata: cr\r\r'

function events(chunks) {
  const parser = new EventStreamParser()
  return chunks.flatMap((chunk) => parser.feed(chunk))
}

test('fields, comments, retry and every line ending, as WHATWG says', () => {
  const items = events([STREAM])
  assert.deepEqual(items, [
    {kind: 'retry', ms: 3000},
    {kind: 'comment', text: ' hi'},
    {kind: 'event', event: {type: 'connected', data: '{"a":1}', id: 'e.1'}},
    {kind: 'event', event: {type: 'message', data: 'two\nlines', id: 'e.1'}},
    {kind: 'event', event: {type: 'message', data: 'x', id: ''}},
    {kind: 'event', event: {type: 'n', data: 'cr', id: ''}},
  ])
})

test('any chunking gives the same items', () => {
  const whole = events([STREAM])
  for (let size = 1; size < 12; size++) {
    const chunks = []
    for (let i = 0; i < STREAM.length; i += size) chunks.push(STREAM.slice(i, i + size))
    assert.deepEqual(events(chunks), whole, `chunks of ${size}`)
  }
})

test('a BOM is skipped, ids with NUL ignored, bad retry ignored, no data no event', () => {
  assert.deepEqual(events(['\ufeffdata: a\n\n']), [{kind: 'event', event: {type: 'message', data: 'a', id: ''}}])
  assert.deepEqual(events(['id: a\0b\ndata: a\n\n'])[0].event.id, '')
  assert.deepEqual(events(['retry: 1x\n\n']), [])
  assert.deepEqual(events(['event: x\n\n']), [])
})
