// The notifications app in headless Chromium: two users in two browser
// contexts, live delivery without polling, tabs in sync, a server restart
// with replay, logout, org announcements and presence (who of the org is
// online, listed), and the shared
// client (clients/js): ten tabs on one stream, the leading tab closed
// mid-burst, a tab back from another page. Faults between browser and
// server (and the polling fallback): adversity.test.mjs.
// Screenshots go to target/browser-screenshots.
//
// Run with scripts/test, or: NOTIFICATIONS_BIN=target/debug/notifications
// node --test examples/browser/notifications.test.mjs
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtempSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as support from './support.mjs'
import {freePort, item, launch, send, shot, stopServer} from './support.mjs'

let browser
let server
let port
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'notifications-browser-'))
const contexts = {}

const startServer = (onPort) => support.startServer(onPort, dataDir)
const base = () => `http://127.0.0.1:${port}`
const logIn = (page, user, query = '', org = '') => support.logIn(page, base(), user, {query, org})

before(async () => {
  port = await freePort()
  server = await startServer(port)
  browser = await launch()
  for (const user of ['alice', 'bob']) {
    contexts[user] = await browser.newContext()
    contexts[user].page = await contexts[user].newPage()
    await logIn(contexts[user].page, user)
    await contexts[user].page.waitForSelector('#status[data-state="connected"]')
  }
})

after(async () => {
  await browser?.close()
  if (server) await stopServer(server)
})

test('a notification sent by one user appears on the other page within 1 s, without polling', async () => {
  const alice = contexts.alice.page
  const bob = contexts.bob.page
  const requests = []
  alice.on('request', (request) => requests.push(`${request.method()} ${new URL(request.url()).pathname}`))
  const sent = Date.now()
  await send(bob, 'alice', 'Hello from bob')
  await alice.waitForSelector(item('Hello from bob'), {timeout: 1000})
  const elapsed = Date.now() - sent
  assert.ok(elapsed < 1000, `appeared after ${elapsed} ms`)
  assert.equal(await alice.textContent('#badge'), '1')
  // Who sent it, as the server recorded it.
  assert.equal(await alice.textContent(`${item('Hello from bob')} .sender`), 'from bob')
  assert.deepEqual(requests, [], 'the page made requests instead of receiving the event on its stream')
  await shot(alice, '1-alice-received')
  await shot(bob, '1-bob-sent')
})

test('marking read in one tab updates the badge in another tab', async () => {
  const first = contexts.alice.page
  const second = await contexts.alice.newPage()
  await second.goto(base())
  await second.waitForSelector('#status[data-state="connected"]')
  await second.waitForSelector(item('Hello from bob'))
  assert.equal(await second.textContent('#badge'), '1')
  await first.click(`${item('Hello from bob')} button.read`)
  await second.waitForSelector('#badge[data-count="0"]', {timeout: 1000})
  await second.waitForSelector(`${item('Hello from bob')}.read`)
  await shot(second, '2-second-tab-in-sync')
  await second.close()
})

test('after the server is killed and restarted the page reconnects and shows what was sent meanwhile', async () => {
  const alice = contexts.alice.page
  await stopServer(server, 'SIGKILL')
  await alice.waitForSelector('#status:is([data-state="reconnecting"], [data-state="offline"])', {timeout: 5000})
  await shot(alice, '3-reconnecting')

  // While the page's server is down, another instance on the same database
  // takes a notification for alice: only replay can bring it to the page.
  const otherPort = await freePort()
  const other = await startServer(otherPort)
  const bobCookie = (await contexts.bob.cookies()).find((c) => c.name === 'sid')
  const response = await fetch(`http://127.0.0.1:${otherPort}/api/notifications`, {
    method: 'POST',
    headers: {'content-type': 'application/json', cookie: `sid=${bobCookie.value}`},
    body: JSON.stringify({user: 'alice', title: 'Sent while you were away'}),
  })
  assert.equal(response.status, 201)
  await stopServer(other, 'SIGTERM')

  server = await startServer(port)
  await alice.waitForSelector(item('Sent while you were away'), {timeout: 15000})
  await alice.waitForSelector('#status[data-state="connected"]')
  assert.equal(await alice.textContent('#badge'), '1')
  const metrics = await (await fetch(`${base()}/metrics`)).text()
  assert.match(metrics, /sse_replayed_total [1-9]/, 'the notification was not replayed from the store')
  await shot(alice, '3-after-restart')
})

test('logging out ends the stream of every tab of that session', async () => {
  const first = contexts.alice.page
  const second = await contexts.alice.newPage()
  await second.goto(base())
  await second.waitForSelector('#status[data-state="connected"]')
  await first.click('#logout')
  await first.waitForSelector('#login-view:not([hidden])')
  // The other tab's stream is ended by the server; its reconnect gets 401.
  await second.waitForSelector('#login-view:not([hidden])', {timeout: 10000})
  await shot(second, '4-logged-out')
  await second.close()
})

test('a member of an org who was offline sees its announcement once back; other orgs never do', async () => {
  const pages = {}
  for (const [user, org] of [['dana', 'acme'], ['erin', 'acme'], ['frank', 'globex']]) {
    const context = await browser.newContext()
    pages[user] = await context.newPage()
    await logIn(pages[user], user, '', org)
    await pages[user].waitForSelector('#status[data-state="connected"]')
  }
  // Erin's laptop loses its network.
  const erin = pages.erin
  await erin.context().setOffline(true)
  await erin.waitForSelector('#status:is([data-state="reconnecting"], [data-state="offline"])', {timeout: 10000})
  await pages.dana.fill('#announce-form input[name=title]', 'All hands at 3')
  await pages.dana.fill('#announce-form textarea[name=message]', 'In the big room')
  await pages.dana.click('#announce-form button[type=submit]')
  await pages.dana.waitForSelector('#announce-result:text("Announced to acme.")')
  const announced = '#announcements li:has(.title:text-is("All hands at 3"))'
  await pages.dana.waitForSelector(announced, {timeout: 1000})
  // Back online: the stream resumes from its last event id and replays it.
  await erin.context().setOffline(false)
  await erin.waitForSelector(announced, {timeout: 15000})
  assert.equal(await erin.textContent(`${announced} .from`), 'from dana')
  await shot(erin, '6-announcement-after-offline')
  // Frank, of another org, sees his own org's (empty) panel, never acme's.
  assert.equal(await pages.frank.textContent('#org-name'), 'globex')
  assert.equal(await pages.frank.locator('#announcements li').count(), 0)
  // Who of acme is online, listed on the page and by the API; never globex's.
  await erin.waitForSelector('#members li[data-user="dana"][data-streams="1"]', {timeout: 5000})
  await erin.waitForSelector('#members li[data-user="erin"]', {timeout: 5000})
  const members = await erin.evaluate(async () => (await fetch('/api/presence?org=acme')).json())
  assert.deepEqual(members, [{user: 'dana', streams: 1}, {user: 'erin', streams: 1}])
  assert.equal(await pages.frank.locator('#members li[data-user="dana"]').count(), 0)
  const foreign = await pages.frank.evaluate(async () => (await fetch('/api/presence?org=acme')).status)
  assert.equal(foreign, 404)
  // The sender's dot says she is online, and goes grey when her only tab closes.
  await erin.waitForSelector(`${announced} .presence[data-online="true"]`, {state: "attached", timeout: 5000})
  await pages.dana.context().close()
  await erin.waitForSelector(`${announced} .presence[data-online="false"]`, {state: "attached", timeout: 5000})
  // And leaves the list.
  await erin.waitForSelector('#members li[data-user="dana"]', {state: 'detached', timeout: 5000})
  await shot(erin, '6-sender-went-offline')
  for (const page of [pages.erin, pages.frank]) await page.context().close()
})

// Sends a notification to `to` through the API, as `fromPage`'s user.
async function sendVia(fromPage, to, title) {
  const [cookie] = await fromPage.context().cookies()
  const response = await fetch(`${base()}/api/notifications`, {
    method: 'POST',
    headers: {'content-type': 'application/json', origin: base(), cookie: `sid=${cookie.value}`},
    body: JSON.stringify({user: to, title}),
  })
  assert.equal(response.status, 201)
}

async function presenceOf(page, user) {
  return page.evaluate(async (u) => (await fetch(`/api/presence?user=${u}`)).json(), user)
}

// Counts every notification event a tab's app receives, by id.
async function recordDeliveries(page) {
  await page.evaluate(() => {
    window.delivered = []
    window.notificationsClient.on('notification', (event) => window.delivered.push(event.lastEventId))
  })
}

test('ten tabs of one user share one stream: all live within 1 s, every API call answered', async () => {
  const context = await browser.newContext()
  const tabs = []
  for (let i = 0; i < 10; i++) {
    const page = await context.newPage()
    if (i === 0) await logIn(page, 'tabby')
    else await page.goto(base())
    await page.waitForSelector('#status[data-state="connected"]', {timeout: 10000})
    tabs.push(page)
  }
  // Ten tabs, one open stream on the server.
  assert.deepEqual(await presenceOf(tabs[9], 'tabby'), {user: 'tabby', online: true, streams: 1})
  const sent = Date.now()
  await sendVia(contexts.bob.page, 'tabby', 'To every tab')
  await Promise.all(tabs.map((page) => page.waitForSelector(item('To every tab'), {timeout: 1000})))
  const elapsed = Date.now() - sent
  assert.ok(elapsed < 1000, `the last tab showed it after ${elapsed} ms`)
  for (const page of tabs) assert.equal(await page.textContent('#badge'), '1')
  // HTTP/1.1 allows 6 connections per host: with one stream, API calls from
  // every tab still get through at once.
  const answered = await Promise.all(
    tabs.map((page) =>
      page.evaluate(async () => {
        const started = performance.now()
        const response = await fetch('/api/notifications/unread-count')
        return {status: response.status, ms: performance.now() - started}
      }),
    ),
  )
  for (const {status, ms} of answered) {
    assert.equal(status, 200)
    assert.ok(ms < 2000, `an API call took ${ms} ms`)
  }
  await shot(tabs[9], '7-tenth-tab')
  await context.close()
})

test('closing the leading tab while notifications arrive loses none and repeats none', async () => {
  const context = await browser.newContext()
  const tabs = []
  for (let i = 0; i < 4; i++) {
    const page = await context.newPage()
    if (i === 0) await logIn(page, 'leah')
    else await page.goto(base())
    await page.waitForSelector('#status[data-state="connected"]', {timeout: 10000})
    await recordDeliveries(page)
    tabs.push(page)
  }
  const leaders = await Promise.all(tabs.map((page) => page.evaluate(() => window.notificationsClient.isLeader)))
  assert.equal(leaders.filter(Boolean).length, 1, 'one leading tab')
  const leader = tabs[leaders.indexOf(true)]
  const others = tabs.filter((page) => page !== leader)
  const titles = Array.from({length: 20}, (_, i) => `burst ${i}`)
  for (const [i, title] of titles.entries()) {
    if (i === 6) await leader.close()
    await sendVia(contexts.bob.page, 'leah', title)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  for (const page of others) {
    await page.waitForFunction(() => window.delivered.length >= 20, null, {timeout: 10000})
    // Let any late duplicate show itself.
    await new Promise((resolve) => setTimeout(resolve, 300))
    const ids = await page.evaluate(() => window.delivered)
    assert.equal(ids.length, 20, `delivered ${ids.length}: ${ids}`)
    assert.equal(new Set(ids).size, 20, 'a notification was delivered twice')
    for (const title of titles) await page.waitForSelector(item(title), {state: 'attached', timeout: 1000})
  }
  assert.equal((await presenceOf(others[0], 'leah')).streams, 1)
  await shot(others[0], '8-after-leader-closed')
  await context.close()
})

test('a tab restored from the back/forward cache catches up', async () => {
  const context = await browser.newContext()
  const page = await context.newPage()
  await logIn(page, 'bea')
  await page.waitForSelector('#status[data-state="connected"]')
  await page.goto(`${base()}/healthz`)
  await sendVia(contexts.bob.page, 'bea', 'While you were elsewhere')
  await page.goBack()
  await page.waitForSelector(item('While you were elsewhere'), {timeout: 10000})
  await page.waitForSelector('#status[data-state="connected"]', {timeout: 10000})
  await sendVia(contexts.bob.page, 'bea', 'And live again')
  await page.waitForSelector(item('And live again'), {timeout: 3000})
  await shot(page, '9-back-from-bfcache')
  await context.close()
})
