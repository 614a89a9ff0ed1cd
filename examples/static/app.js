// The notifications page: plain JavaScript, no build step.
//
// Live updates come from one EventSource per tab. Every change (created,
// read, deleted) is an event carrying the new unread count, so every tab of
// a user stays in sync. When the browser's own reconnect gives up (the
// server answered an error), the page reconnects itself with exponential
// backoff, 1 s to 30 s, resuming from the last event id. Without
// EventSource it polls.
'use strict'

const STREAM = '/api/notifications/stream'
// The polling fallback's interval (`?poll=MS` overrides it, for tests).
const POLL_MS = Number(new URLSearchParams(location.search).get('poll')) || 10000
const $ = (id) => document.getElementById(id)

const state = {
  user: null,
  items: new Map(), // id -> notification
  unread: 0,
  nextBefore: null,
  lastEventId: '',
  source: null,
  backoff: 1000,
  reconnectTimer: null,
  pollTimer: null,
  loading: null, // events that arrive while the list is (re)loaded
}

async function api(method, path, body) {
  const init = {method, credentials: 'same-origin', headers: {}}
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  const response = await fetch(path, init)
  if (response.status === 401 && path !== '/api/login') {
    showLogin()
    throw new Error('not logged in')
  }
  if (!response.ok) {
    const error = await response.json().catch(() => ({error: response.statusText}))
    throw Object.assign(new Error(error.error || response.statusText), {field: error.field, status: response.status})
  }
  return response.status === 204 ? null : response.json()
}

function setStatus(status) {
  const element = $('status')
  element.dataset.state = status
  element.textContent = status
}

function setBadge(count) {
  state.unread = count
  const badge = $('badge')
  badge.textContent = String(count)
  badge.dataset.count = String(count)
  document.title = count > 0 ? `(${count}) Notifications` : 'Notifications'
}

function safeUrl(url) {
  if (typeof url !== 'string') return null
  if (url.startsWith('/') && !url.startsWith('//')) return url
  if (url.startsWith('https://') || url.startsWith('http://')) return url
  return null
}

function render() {
  const list = $('list')
  const ids = [...state.items.keys()].sort((a, b) => b - a)
  list.replaceChildren(...ids.map((id) => renderItem(state.items.get(id))))
  $('empty').hidden = ids.length > 0
  $('more').hidden = state.nextBefore === null
}

function renderItem(notification) {
  const item = $('item-template').content.firstElementChild.cloneNode(true)
  item.dataset.id = String(notification.id)
  item.classList.add(notification.read ? 'read' : 'unread')
  item.querySelector('.kind').textContent = notification.kind
  item.querySelector('.title').textContent = notification.title
  item.querySelector('.message').textContent = notification.message
  const link = item.querySelector('.link')
  const href = safeUrl(notification.actionUrl)
  if (href) {
    link.href = href
    link.textContent = href
  } else {
    link.remove()
  }
  const time = item.querySelector('.time')
  time.dateTime = notification.createdAt
  time.textContent = new Date(notification.createdAt).toLocaleString()
  item.querySelector('.read').addEventListener('click', () => act('POST', `/api/notifications/${notification.id}/read`))
  item.querySelector('.delete').addEventListener('click', () => act('DELETE', `/api/notifications/${notification.id}`))
  return item
}

async function act(method, path) {
  try {
    await api(method, path)
    // Live tabs update from the change event; a polling tab refetches.
    if (state.pollTimer) await loadAll()
  } catch (error) {
    console.warn('[notifications]', error.message)
  }
}

// Applies one change event (idempotent, so replays are harmless).
function apply(change) {
  if (state.loading) {
    state.loading.push(change)
    return
  }
  switch (change.type) {
    case 'created':
      state.items.set(change.notification.id, change.notification)
      break
    case 'read':
      for (const id of change.ids) {
        const item = state.items.get(id)
        if (item) state.items.set(id, {...item, read: true})
      }
      break
    case 'deleted':
      for (const id of change.ids) state.items.delete(id)
      break
  }
  setBadge(change.unreadCount)
  render()
}

// Fetches the first page and the unread count, then re-applies the events
// that arrived meanwhile: the fetch may or may not include them.
async function loadAll() {
  state.loading = []
  try {
    const [page, unread] = await Promise.all([
      api('GET', '/api/notifications?limit=20'),
      api('GET', '/api/notifications/unread-count'),
    ])
    const arrived = state.loading
    state.loading = null
    state.items = new Map(page.items.map((n) => [n.id, n]))
    state.nextBefore = page.nextBefore
    setBadge(unread.count)
    render()
    for (const change of arrived) apply(change)
  } catch (error) {
    state.loading = null
    throw error
  }
}

async function loadMore() {
  if (state.nextBefore === null) return
  const page = await api('GET', `/api/notifications?limit=20&before=${state.nextBefore}`)
  for (const n of page.items) state.items.set(n.id, n)
  state.nextBefore = page.nextBefore
  render()
}

function connect() {
  clearTimeout(state.reconnectTimer)
  if (state.source) state.source.close()
  // A new EventSource cannot send Last-Event-ID: resume through the query.
  const url = state.lastEventId ? `${STREAM}?lastEventId=${encodeURIComponent(state.lastEventId)}` : STREAM
  const source = new EventSource(url)
  state.source = source
  source.addEventListener('connected', () => {
    setStatus('connected')
    state.backoff = 1000
    // Without an id to resume from, the stream replays nothing: fetch the
    // current state now that live events are flowing.
    if (!state.lastEventId) loadAll().catch((e) => console.warn('[notifications]', e.message))
  })
  source.addEventListener('notification', (event) => {
    state.lastEventId = event.lastEventId
    apply(JSON.parse(event.data))
  })
  source.addEventListener('reset', (event) => {
    // History is gone: refetch, and resume from the id the reset carries.
    state.lastEventId = event.lastEventId
    loadAll().catch((e) => console.warn('[notifications]', e.message))
  })
  source.onerror = () => {
    if (source.readyState === EventSource.CONNECTING) {
      // The browser retries by itself (sending Last-Event-ID).
      setStatus(navigator.onLine ? 'reconnecting' : 'offline')
      return
    }
    // The browser gave up (an error status). Logged out, or try later.
    source.close()
    fetch('/api/session', {credentials: 'same-origin'})
      .then((response) => (response.status === 401 ? showLogin() : scheduleReconnect()))
      .catch(() => scheduleReconnect())
  }
}

function scheduleReconnect() {
  setStatus(navigator.onLine ? 'reconnecting' : 'offline')
  const delay = state.backoff
  state.backoff = Math.min(state.backoff * 2, 30000)
  console.info('[notifications] reconnecting in', delay, 'ms')
  state.reconnectTimer = setTimeout(connect, delay)
}

function startPolling() {
  console.warn('[notifications] EventSource is not available: polling every', POLL_MS, 'ms')
  setStatus('polling')
  loadAll().catch((e) => console.warn('[notifications]', e.message))
  state.pollTimer = setInterval(() => loadAll().then(() => setStatus('polling'), () => setStatus('offline')), POLL_MS)
}

function stopLive() {
  clearTimeout(state.reconnectTimer)
  clearInterval(state.pollTimer)
  state.pollTimer = null
  if (state.source) state.source.close()
  state.source = null
}

function showLogin() {
  stopLive()
  state.user = null
  state.lastEventId = ''
  $('login-view').hidden = false
  $('app-view').hidden = true
  $('account').hidden = true
  $('bell').hidden = true
  setStatus('offline')
}

function startApp(user) {
  state.user = user
  $('whoami').textContent = user
  $('login-view').hidden = true
  $('app-view').hidden = false
  $('account').hidden = false
  $('bell').hidden = false
  if ('EventSource' in window) {
    connect()
  } else {
    startPolling()
  }
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const user = $('login-user').value.trim()
  $('login-error').textContent = ''
  try {
    await api('POST', '/api/login', {user})
    startApp(user)
  } catch (error) {
    $('login-error').textContent = error.message
  }
})

$('logout').addEventListener('click', async () => {
  try {
    await api('POST', '/api/logout')
  } finally {
    showLogin()
  }
})

$('send-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const form = new FormData(event.target)
  const body = Object.fromEntries([...form.entries()].filter(([, v]) => v !== ''))
  try {
    const sent = await api('POST', '/api/notifications', body)
    $('send-result').textContent = `Sent to ${sent.user}.`
    event.target.elements.title.value = ''
    event.target.elements.message.value = ''
    if (state.pollTimer && sent.user === state.user) await loadAll()
  } catch (error) {
    $('send-result').textContent = error.field ? `${error.field}: ${error.message}` : error.message
  }
})

$('mark-all-read').addEventListener('click', () => act('POST', '/api/notifications/read-all'))
$('delete-read').addEventListener('click', () => act('DELETE', '/api/notifications?read=true'))
$('more').addEventListener('click', () => loadMore().catch((e) => console.warn('[notifications]', e.message)))
window.addEventListener('offline', () => setStatus('offline'))
window.addEventListener('online', () => {
  if (state.user && state.source && state.source.readyState === EventSource.CLOSED) connect()
})

fetch('/api/session', {credentials: 'same-origin'})
  .then(async (response) => (response.ok ? startApp((await response.json()).user) : showLogin()))
  .catch(() => showLogin())
