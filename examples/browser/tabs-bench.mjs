// Server connections and memory for one user with 1, 5 and 10 tabs of the
// notifications page, with the shared client and with one stream per tab
// (`?share=0`, the page before it). Prints a Markdown table.
//
//   cargo build --release -p examples --bin notifications
//   NOTIFICATIONS_BIN=target/release/notifications node examples/browser/tabs-bench.mjs
import {spawn} from 'node:child_process'
import {readFileSync} from 'node:fs'
import net from 'node:net'
import {chromium} from 'playwright-core'

const BIN = process.env.NOTIFICATIONS_BIN ?? 'target/release/notifications'
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'

const freePort = () =>
  new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const {port} = probe.address()
      probe.close(() => resolve(port))
    })
  })

const rssKib = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1])

async function measure(browser, base, pid, tabs, share) {
  const context = await browser.newContext()
  const pages = []
  const query = share ? '' : '?share=0'
  const first = await context.newPage()
  await first.goto(`${base}/${query}`)
  await first.fill('#login-user', `tabs-${share ? 's' : 'p'}-${tabs}`)
  await first.click('#login-form button[type=submit]')
  pages.push(first)
  for (let i = 1; i < tabs; i++) {
    const page = await context.newPage()
    // Past 6 connections per host a tab may never finish loading.
    await page.goto(`${base}/${query}`, {waitUntil: 'commit', timeout: 5000}).catch(() => {})
    pages.push(page)
  }
  // Tabs past the browser's 6 connections per host never connect: wait a
  // fixed time rather than for every tab.
  await new Promise((resolve) => setTimeout(resolve, 3000))
  const states = await Promise.all(pages.map((p) => p.getAttribute('#status', 'data-state', {timeout: 1000}).catch(() => null)))
  const connected = states.filter((s) => s === 'connected').length
  const metrics = await (await fetch(`${base}/metrics`)).text()
  const streams = Number(/^sse_active_connections (\d+)/m.exec(metrics)[1])
  const rss = rssKib(pid)
  // An API call from the last tab.
  const started = Date.now()
  const answered = await Promise.race([
    pages.at(-1).evaluate(async () => (await fetch('/api/notifications/unread-count')).status),
    new Promise((resolve) => setTimeout(() => resolve('timeout'), 4000)),
  ])
  const apiMs = answered === 'timeout' ? '> 4000' : String(Date.now() - started)
  await context.close()
  await new Promise((resolve) => setTimeout(resolve, 1500))
  return {tabs, share, connected, streams, rss, apiMs}
}

const port = await freePort()
const server = spawn(BIN, ['--addr', `127.0.0.1:${port}`, '--store', 'memory', '--login-rate', '0'], {stdio: ['ignore', 'pipe', 'ignore']})
await new Promise((resolve) => server.stdout.on('data', (c) => String(c).includes('listening') && resolve()))
const base = `http://127.0.0.1:${port}`
const browser = await chromium.launch({executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu']})
const idle = rssKib(server.pid)
const rows = []
for (const share of [false, true]) {
  for (const tabs of [1, 5, 10]) rows.push(await measure(browser, base, server.pid, tabs, share))
}
await browser.close()
server.kill()
console.log(`server RSS idle: ${idle} KiB\n`)
console.log('| tabs | client | tabs live | server streams | server RSS | API call from the last tab |')
console.log('| --- | --- | --- | --- | --- | --- |')
for (const r of rows) {
  console.log(`| ${r.tabs} | ${r.share ? 'shared (now)' : 'one stream per tab (before)'} | ${r.connected} | ${r.streams} | ${r.rss} KiB | ${r.apiMs} ms |`)
}
