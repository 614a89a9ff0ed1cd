// Parses the corpus our encoder produced with the npm `eventsource-parser`
// (an independent implementation) and compares with what our parser saw.
// Usage: node crosscheck.mjs corpus.json   (exits non-zero on a mismatch)
//
// eventsource-parser 4 declares node >= 22.12 but runs on node 20 (its code
// uses nothing newer); version 3 does not report id-only blocks (`onId`),
// which the spec says update the last event id.
import {readFileSync} from 'node:fs'
import {createParser} from 'eventsource-parser'

const corpus = JSON.parse(readFileSync(process.argv[2], 'utf8'))

function parse(chunks) {
  const events = []
  let lastEventId = ''
  const parser = createParser({
    // Called for every block with a valid id, with or without data, as
    // EventSource updates its last event id.
    onId(id) {
      lastEventId = id
    },
    onEvent(event) {
      events.push({type: event.event || 'message', data: event.data, lastEventId})
    },
  })
  for (const chunk of chunks) parser.feed(chunk)
  return events
}

let failures = 0
for (const [name, chunks] of Object.entries(corpus.chunkings)) {
  const got = parse(chunks)
  const expected = corpus.expected
  const equal = (a, b) => a !== undefined && b !== undefined &&
    a.type === b.type && a.data === b.data && a.lastEventId === b.lastEventId
  const at = Array.from({length: Math.max(got.length, expected.length)}, (_, i) => i)
    .find((i) => !equal(got[i], expected[i]))
  if (at !== undefined) {
    failures++
    console.error(`${name}: eventsource-parser saw ${got.length} events, ours ${expected.length}; first difference at ${at}:`)
    console.error('  eventsource-parser:', JSON.stringify(got[at]))
    console.error('  ours:              ', JSON.stringify(expected[at]))
  }
}
console.log(`${Object.keys(corpus.chunkings).length} chunkings of ${corpus.expected.length} events: ${failures} mismatches`)
process.exit(failures ? 1 : 0)
