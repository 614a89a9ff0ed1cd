// What the browser tests share: the app's process, headless Chromium, and
// the page's controls.
import {spawn} from 'node:child_process'
import {mkdirSync} from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {chromium} from 'playwright-core'

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const BIN = process.env.NOTIFICATIONS_BIN ?? path.join(root, 'target/debug/notifications')
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'
const SHOTS = process.env.SCREENSHOT_DIR ?? path.join(root, 'target/browser-screenshots')

export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const {port} = probe.address()
      probe.close(() => resolve(port))
    })
    probe.on('error', reject)
  })
}

/** Starts the app on `port` with the default SQLite store in `dataDir`. */
export function startServer(port, dataDir, extraArgs = []) {
  return new Promise((resolve, reject) => {
    const args = ['--addr', `127.0.0.1:${port}`, '--heartbeat-secs', '1', ...extraArgs]
    // Many logins from one address: the login rate limit is for real clients.
    const child = spawn(BIN, args, {cwd: dataDir, env: {SSE_LOGIN_RATE: '0', ...process.env}, stdio: ['ignore', 'pipe', 'inherit']})
    const timer = setTimeout(() => reject(new Error('the app did not start within 10 s')), 10000)
    child.stdout.on('data', (chunk) => {
      if (String(chunk).includes('listening on')) {
        clearTimeout(timer)
        resolve(child)
      }
    })
    child.on('exit', (code) => reject(new Error(`the app exited with ${code}`)))
  })
}

export function stopServer(child, signal = 'SIGKILL') {
  return new Promise((resolve) => {
    child.removeAllListeners('exit')
    child.on('exit', () => resolve())
    child.kill(signal)
  })
}

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
}

export async function shot(page, name) {
  mkdirSync(SHOTS, {recursive: true})
  await page.screenshot({path: path.join(SHOTS, `${name}.png`), fullPage: true})
}

/** Logs in as `user` (of `org`) on the page at `base` + `query`. */
export async function logIn(page, base, user, {query = '', org = '', reload = true} = {}) {
  if (reload) await page.goto(`${base}/${query}`)
  await page.fill('#login-user', user)
  if (org) await page.fill('#login-org', org)
  await page.click('#login-form button[type=submit]')
  await page.waitForSelector('#app-view:not([hidden])')
}

export async function send(page, to, title) {
  await page.fill('#send-form input[name=user]', to)
  await page.fill('#send-form input[name=title]', title)
  await page.click('#send-form button[type=submit]')
  await page.waitForSelector(`#send-result:text("Sent to ${to}.")`)
}

/** A session cookie of a fresh login as `user`, made against `base`. */
export async function loginCookie(base, user) {
  const response = await fetch(`${base}/api/login`, {
    method: 'POST',
    headers: {'content-type': 'application/json', origin: base},
    body: JSON.stringify({user}),
  })
  if (response.status !== 204) throw new Error(`login as ${user}: ${response.status}`)
  return /sid=[^;]+/.exec(response.headers.get('set-cookie'))[0]
}

/** Sends a notification to `to` through the API with `cookie`. */
export async function sendWith(base, cookie, to, title) {
  const response = await fetch(`${base}/api/notifications`, {
    method: 'POST',
    headers: {'content-type': 'application/json', origin: base, cookie},
    body: JSON.stringify({user: to, title}),
  })
  if (response.status !== 201) throw new Error(`sending to ${to}: ${response.status}`)
}

export const item = (title) => `#list li:has(.title:text-is("${title}"))`

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
