import {test} from 'node:test'
import assert from 'node:assert/strict'
import {compareCursors, fullJitter, parseCursor} from '../src/backoff.js'

test('full jitter stays under an exponential bound capped at `cap`', () => {
  for (let attempt = 0; attempt < 40; attempt++) {
    const bound = Math.min(30000, 1000 * 2 ** attempt)
    assert.equal(fullJitter(attempt, {base: 1000, cap: 30000}, () => 0), 0)
    const top = fullJitter(attempt, {base: 1000, cap: 30000}, () => 0.999999)
    assert.ok(top < bound && top >= bound - 1, `attempt ${attempt}: ${top} vs ${bound}`)
  }
})

test('full jitter spreads clients that failed together', () => {
  const delays = new Set(Array.from({length: 200}, () => fullJitter(3)))
  assert.ok(delays.size > 150, `only ${delays.size} distinct delays`)
  for (const d of delays) assert.ok(d >= 0 && d < 8000)
})

test('cursors compare by position within one epoch only', () => {
  assert.deepEqual(parseCursor('4kz2rqcn.17'), {epoch: '4kz2rqcn', position: 17})
  assert.equal(parseCursor('17'), null)
  assert.equal(parseCursor(''), null)
  assert.equal(compareCursors('4kz2rqcn.17', '4kz2rqcn.9'), 1)
  assert.equal(compareCursors('4kz2rqcn.9', '4kz2rqcn.17'), -1)
  assert.equal(compareCursors('4kz2rqcn.9', '4kz2rqcn.9'), 0)
  assert.equal(compareCursors('aaaaaaaa.9', '4kz2rqcn.1'), 0, 'another epoch is not comparable')
  assert.equal(compareCursors('abc', '4kz2rqcn.1'), 0)
})
