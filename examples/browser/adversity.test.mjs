// The shared browser client (clients/js) under adversity, in headless
// Chromium against the notifications app behind a fault-injecting proxy
// (proxy.mjs): two users in one browser profile, an account switch in
// another tab, a stream gone silent, a reconnect that gets no answer, a
// short 5xx outage, connection resets, a proxy that buffers streams (the
// polling fallback).
//
// Run with scripts/test, or: NOTIFICATIONS_BIN=target/debug/notifications
// node --test --test-concurrency=1 examples/browser/adversity.test.mjs
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtempSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {FaultProxy} from './proxy.mjs'
import {freePort, item, launch, logIn, loginCookie, sendWith, shot, sleep, startServer, stopServer} from './support.mjs'

let browser
let server
let proxy
let direct // the app itself, for senders
let base // the app through the proxy, for the browser
let sender // a cookie to send notifications with

before(async () => {
  const port = await freePort()
  server = await startServer(port, mkdtempSync(path.join(os.tmpdir(), 'notifications-adversity-')))
  direct = `http://127.0.0.1:${port}`
  proxy = new FaultProxy(port)
  base = `http://127.0.0.1:${await proxy.listen()}`
  sender = await loginCookie(direct, 'sender')
  browser = await launch()
})

after(async () => {
  await browser?.close()
  await proxy?.close()
  if (server) await stopServer(server)
})

/** Waits for the page's status to be one of `states`. */
function status(page, states, timeout = 10000) {
  const selector = states.map((s) => `[data-state="${s}"]`).join(', ')
  return page.waitForSelector(`#status:is(${selector})`, {timeout})
}

/** Records the page's client states in `window.states`. */
async function recordStates(page) {
  await page.evaluate(() => {
    window.states = []
    window.notificationsClient.onStateChange((s) => window.states.push(s))
  })
}

const shows = (page, title) => page.locator(item(title)).count()

/** Runs `body` with a fresh browser profile, closed however it ends. */
async function inProfile(body) {
  const context = await browser.newContext()
  try {
    await body(context)
  } finally {
    await context.close()
  }
}

test("two users in one browser profile: each tab shows its own user's notifications only", () =>
  inProfile(async (context) => {
    // Two tabs at the login page; one logs in as ann, then the other as
    // ben, which replaces the profile's cookie and (a login rotates the
    // session it was sent with) ends ann's session and her stream. No tab
    // may ever show one user's notifications under the other's name.
    // (`followLogins=0`: the app does not reload a tab on a login in
    // another, so what is tested is the client's grouping alone.)
    const ann = await context.newPage()
    const ben = await context.newPage()
    const page = `${base}/?followLogins=0`
    await Promise.all([ann.goto(page), ben.goto(page)])
    await logIn(ann, base, 'ann', {reload: false})
    await status(ann, ['connected'])
    await sendWith(direct, sender, 'ann', 'For ann only')
    await ann.waitForSelector(item('For ann only'), {timeout: 3000})
    await logIn(ben, base, 'ben', {reload: false})
    await status(ben, ['connected'])
    await sendWith(direct, sender, 'ben', 'For ben only')
    await ben.waitForSelector(item('For ben only'), {timeout: 3000})
    // Ann's tab lost her session: it shows the login, or ben's own inbox
    // once its stream says whose it is; never ben's under ann's name.
    await ann.waitForFunction(
      () => !document.getElementById('login-view').hidden || document.getElementById('whoami').textContent === 'ben',
      null,
      {timeout: 10000},
    )
    // A third tab opened now (ben's cookie) shows ben's inbox.
    const later = await context.newPage()
    await later.goto(page)
    await status(later, ['connected'])
    await later.waitForSelector(item('For ben only'), {timeout: 3000})
    await sendWith(direct, sender, 'ann', 'Ann again')
    await sendWith(direct, sender, 'ben', 'Ben again')
    await ben.waitForSelector(item('Ben again'), {timeout: 3000})
    await later.waitForSelector(item('Ben again'), {timeout: 3000})
    await sleep(500)
    for (const page of [ben, later]) {
      assert.equal(await shows(page, 'For ann only'), 0, "a tab of ben's showed ann's notification")
      assert.equal(await shows(page, 'Ann again'), 0, "a tab of ben's showed ann's notification")
      assert.equal(await page.textContent('#whoami'), 'ben')
    }
    if ((await ann.textContent('#whoami')) === 'ann' && (await ann.isVisible('#app-view'))) {
      assert.equal(await shows(ann, 'For ben only'), 0, "ann's tab showed ben's notification")
      assert.equal(await shows(ann, 'Ben again'), 0, "ann's tab showed ben's notification")
    }
    await shot(ben, 'adversity-1-two-users-one-profile')
  }))

test('logout and login as another user in one tab: the other tabs show the new user, never a mix', () =>
  inProfile(async (context) => {
    const tabs = []
    for (let i = 0; i < 3; i++) {
      const page = await context.newPage()
      if (i === 0) await logIn(page, base, 'cyd')
      else await page.goto(base)
      await status(page, ['connected'])
      tabs.push(page)
    }
    const [switcher, ...others] = tabs
    await switcher.click('#logout')
    await switcher.waitForSelector('#login-view:not([hidden])')
    await switcher.fill('#login-user', 'dee')
    await switcher.click('#login-form button[type=submit]')
    await switcher.waitForSelector('#app-view:not([hidden])')
    await sendWith(direct, sender, 'dee', 'For dee')
    await sendWith(direct, sender, 'cyd', 'For cyd')
    // Every tab ends up as dee (reloaded on the stream's user change), with
    // dee's notification and never cyd's.
    for (const page of tabs) {
      await page.waitForFunction(() => document.querySelector('#whoami')?.textContent === 'dee', null, {timeout: 10000})
      await status(page, ['connected'])
      await page.waitForSelector(item('For dee'), {timeout: 5000})
    }
    await sleep(500)
    for (const page of tabs) assert.equal(await shows(page, 'For cyd'), 0, "a tab of dee's showed cyd's notification")
    await shot(others[0], 'adversity-2-account-switch')
  }))

test('a stream that goes silent with its socket open is replaced within a few heartbeats', () =>
  inProfile(async (context) => {
    const page = await context.newPage()
    await logIn(page, base, 'sil', {query: '?connectTimeout=3000'})
    await status(page, ['connected'])
    const stalledAt = Date.now()
    // The open stream hears nothing from now on; new requests get through.
    proxy.silenceStreams()
    for (let i = 0; i < 5; i++) await sendWith(direct, sender, 'sil', `Silent ${i}`)
    // The server's heartbeat is 1 s: about 2.5 s of silence, then a new
    // stream (the silenced one never delivers again) replays them.
    for (let i = 0; i < 5; i++) await page.waitForSelector(item(`Silent ${i}`), {timeout: 8000})
    const elapsed = Date.now() - stalledAt
    assert.ok(elapsed < 8000, `back after ${elapsed} ms`)
  }))

test('a reconnect that gets no answer times out, and the stream is back soon after the server answers again', () =>
  inProfile(async (context) => {
    const page = await context.newPage()
    await logIn(page, base, 'una', {query: '?connectTimeout=3000'})
    await status(page, ['connected'])
    // Requests from now on get no answer, and the open stream is cut.
    proxy.setMode('stall')
    proxy.dropAll()
    await status(page, ['reconnecting', 'connecting', 'offline'])
    await sleep(8000)
    await sendWith(direct, sender, 'una', 'After the black hole')
    const answering = Date.now()
    proxy.setMode('pass')
    await page.waitForSelector(item('After the black hole'), {timeout: 10000})
    await status(page, ['connected'])
    const elapsed = Date.now() - answering
    assert.ok(elapsed < 10000, `back ${elapsed} ms after the server answered`)
  }))

test('a short 5xx outage: no polling, Retry-After honoured, streaming again once it ends', () =>
  inProfile(async (context) => {
    const page = await context.newPage()
    await logIn(page, base, 'vic')
    await status(page, ['connected'])
    await recordStates(page)
    const outage = Date.now()
    proxy.setMode('refuse')
    proxy.dropAll()
    await sleep(7000)
    const attempts = proxy.requests(/^GET \/api\/notifications\/stream/, outage).length
    proxy.setMode('pass')
    await sendWith(direct, sender, 'vic', 'After the outage')
    // The next attempt comes within the backoff's bound, which may have
    // grown to its 30 s cap over the outage (full jitter: usually sooner).
    await page.waitForSelector(item('After the outage'), {timeout: 31000})
    await status(page, ['connected'])
    const states = await page.evaluate(() => window.states)
    assert.ok(!states.includes('polling'), `the client polled: ${states.join(' ')}`)
    // Retry-After: 1 and a growing backoff: far fewer than one attempt a second.
    assert.ok(attempts >= 2 && attempts <= 7, `${attempts} attempts in 7 s of 503s`)
  }))

test('connection resets: clients back off with jitter, not all together on a fixed beat', async () => {
  const clients = []
  try {
    for (const user of ['wes', 'xia', 'yul', 'zed']) {
      const context = await browser.newContext()
      const page = await context.newPage()
      await logIn(page, base, user)
      await status(page, ['connected'])
      clients.push({context, page, user})
    }
    const outage = Date.now()
    proxy.setMode('reset')
    proxy.dropAll()
    await sleep(10000)
    proxy.setMode('pass')
    // A reset connection sends nothing, so whose it was is unknown: count
    // the connections the proxy reset, and when.
    const resets = proxy.log.filter((e) => e.at >= outage && e.mode === 'reset').map((e) => e.at - outage)
    assert.ok(resets.length >= clients.length, `only ${resets.length} attempts were made`)
    // A fixed 3 s retry makes about 3 attempts per client in 10 s, all at
    // nearly the same moments; a full-jitter backoff from 1 s spreads them
    // and makes fewer as it grows.
    assert.ok(resets.length <= clients.length * 6, `${resets.length} attempts: no backoff (${resets.join(' ')})`)
    const firsts = resets.slice(0, clients.length)
    const spread = Math.max(...firsts) - Math.min(...firsts)
    assert.ok(spread > 100, `the first retries came within ${spread} ms of each other: ${resets.join(' ')}`)
    // Each is back within its current backoff (at most its 30 s cap).
    for (const {user} of clients) await sendWith(direct, sender, user, `Back, ${user}`)
    for (const {page, user} of clients) await page.waitForSelector(item(`Back, ${user}`), {timeout: 35000})
  } finally {
    for (const {context} of clients) await context.close()
  }
})

test('behind a proxy that buffers streams the page polls, without flapping in presence, then streams again', () =>
  inProfile(async (context) => {
    // An org member watching, straight to the app (not through the proxy).
    const watcher = await browser.newContext()
    try {
      const observer = await watcher.newPage()
      await logIn(observer, direct, 'obs', {org: 'polling-org'})
      await status(observer, ['connected'])
      const page = await context.newPage()
      const query = '?connectTimeout=1500&failuresBeforePolling=2&pollsBeforeStreaming=8&poll=500'
      await logIn(page, base, 'pol', {query, org: 'polling-org'})
      await status(page, ['connected'])
      // Streams now answer with their head and then nothing: polls (which
      // the server ends after the replay) get through whole.
      proxy.setMode('buffer')
      proxy.dropAll()
      await status(page, ['polling'], 20000)
      await sendWith(direct, sender, 'pol', 'Polled in')
      await page.waitForSelector(item('Polled in'), {timeout: 5000})
      assert.equal(await page.textContent('#badge'), '1')
      await shot(page, 'adversity-7-polling')
      // Polls come and go every half second; none is a join or a leave.
      await observer.evaluate(() => {
        window.changes = []
        window.notificationsClient.on('presence', (e) => {
          const {user, online} = e.json()
          if (user === 'pol') window.changes.push(online)
        })
      })
      await sleep(3000)
      const changes = await observer.evaluate(() => window.changes)
      assert.deepEqual(changes, [], 'presence flapped while polling')
      // The proxy passes streams again: after a few polls the page streams.
      proxy.setMode('pass')
      await status(page, ['connected'], 20000)
      await sendWith(direct, sender, 'pol', 'Streamed again')
      await page.waitForSelector(item('Streamed again'), {timeout: 3000})
    } finally {
      await watcher.close()
    }
  }))
