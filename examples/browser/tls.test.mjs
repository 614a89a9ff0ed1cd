// The notifications app served over HTTPS by itself (--tls-cert/--tls-key,
// a self-signed test certificate) in headless Chromium: ten tabs, each with
// its own stream (`?share=0`), all on one HTTP/2 connection, every one live;
// over HTTP/1.1 a browser allows six connections per host, so the seventh
// stream would wait.
//
// Run with scripts/test, or: NOTIFICATIONS_BIN=target/debug/notifications
// node --test examples/browser/tls.test.mjs
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {freePort, item, launch, logIn, root, shot, startServer, stopServer} from './support.mjs'

let browser
let server
let port
const certs = path.join(root, 'sse-tower/tests/tls')

before(async () => {
  port = await freePort()
  server = await startServer(port, mkdtempSync(path.join(os.tmpdir(), 'notifications-tls-')), [
    '--tls-cert',
    path.join(certs, 'first.cert.pem'),
    '--tls-key',
    path.join(certs, 'first.key.pem'),
  ])
  browser = await launch()
})

after(async () => {
  await browser?.close()
  if (server) await stopServer(server)
})

/** The server's established TCP connections on its port (Linux). */
function serverConnections() {
  let count = 0
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text
    try {
      text = readFileSync(table, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/)
      if (fields.length < 4) continue
      const localPort = parseInt(fields[1].split(':')[1], 16)
      if (localPort === port && fields[3] === '01') count++
    }
  }
  return count
}

test('ten tabs with a stream each share one HTTP/2 connection over TLS, all live', async () => {
  const base = `https://localhost:${port}`
  const context = await browser.newContext({ignoreHTTPSErrors: true})
  const tabs = []
  for (let i = 0; i < 10; i++) {
    const page = await context.newPage()
    if (i === 0) await logIn(page, base, 'tls-user', {query: '?share=0'})
    else await page.goto(`${base}/?share=0`)
    await page.waitForSelector('#status[data-state="connected"]', {timeout: 10000})
    tabs.push(page)
  }
  for (const page of tabs) {
    const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol)
    assert.equal(protocol, 'h2')
  }
  // Ten streams open on the server, on one connection.
  const presence = await tabs[9].evaluate(async () => (await fetch('/api/presence?user=tls-user')).json())
  assert.deepEqual(presence, {user: 'tls-user', online: true, streams: 10})
  assert.equal(serverConnections(), 1, 'the tabs did not share one connection')
  // The session cookie over https is __Host- prefixed and Secure.
  const [cookie] = await context.cookies()
  assert.equal(cookie.name, '__Host-sid')
  assert.equal(cookie.secure, true)

  const sent = Date.now()
  const status = await tabs[0].evaluate(async () => {
    const response = await fetch('/api/notifications', {
      method: 'POST',
      headers: {'content-type': 'application/json'},
      body: JSON.stringify({user: 'tls-user', title: 'Over HTTP/2'}),
    })
    return response.status
  })
  assert.equal(status, 201)
  await Promise.all(tabs.map((page) => page.waitForSelector(item('Over HTTP/2'), {timeout: 1000})))
  const elapsed = Date.now() - sent
  assert.ok(elapsed < 1000, `the last tab showed it after ${elapsed} ms`)
  assert.equal(serverConnections(), 1)
  await shot(tabs[9], 'tls-tenth-tab')
  await context.close()
})
