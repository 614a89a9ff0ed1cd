// The notifications page: plain JavaScript modules, no build step.
//
// Live updates come from @sse-layer/client (clients/js): one stream per
// browser, shared by every tab (the tabs elect one to hold it and it relays
// every event), resumed from the last event id after any interruption,
// with jittered backoff, a stop on 401 and a polling fallback. Every change
// (created, read, deleted) is an event carrying the new unread count, so
// every tab of a user stays in sync.
import {SseClient} from '/client/index.js'

const STREAM = '/api/notifications/stream'
// The polling fallback's interval (`?poll=MS` overrides it, for tests).
const POLL_MS = Number(new URLSearchParams(location.search).get('poll')) || 10000
const $ = (id) => document.getElementById(id)

const state = {
  user: null,
  org: null,
  announcements: new Map(), // id -> announcement
  online: new Map(), // user -> whether a stream of theirs is open
  items: new Map(), // id -> notification
  unread: 0,
  nextBefore: null,
  client: null, // the shared stream, while logged in
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

// Paths and http(s) URLs only. Browsers read `\` as `/`, so `/\evil.example`
// is the off-site `//evil.example`: no backslash anywhere.
function safeUrl(url) {
  if (typeof url !== 'string' || url.includes('\\')) return null
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

// Announcements to the org, newest first; replays are harmless (by id).
function addAnnouncement(announcement) {
  state.announcements.set(announcement.id, announcement)
  const items = [...state.announcements.values()].sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1))
  $('announcements').replaceChildren(
    ...items.map((a) => {
      const item = $('announcement-template').content.firstElementChild.cloneNode(true)
      item.dataset.id = a.id
      item.querySelector('.title').textContent = a.title
      item.querySelector('.message').textContent = a.message
      item.querySelector('.from').textContent = `from ${a.from}`
      const dot = item.querySelector('.presence')
      dot.dataset.user = a.from
      showPresence(dot, state.online.get(a.from))
      if (!state.online.has(a.from)) lookUpPresence(a.from)
      const time = item.querySelector('.time')
      time.dateTime = a.createdAt
      time.textContent = new Date(a.createdAt).toLocaleString()
      return item
    }),
  )
  $('no-announcements').hidden = items.length > 0
}

// The sender's online dot: asked once, then kept current by `presence`
// events (a member's first tab opening, their last one closing).
function showPresence(dot, online) {
  dot.dataset.online = online ? 'true' : 'false'
  dot.title = online === undefined ? '' : online ? 'online' : 'offline'
}

function setPresence(user, online) {
  state.online.set(user, online)
  for (const dot of document.querySelectorAll('.presence')) {
    if (dot.dataset.user === user) showPresence(dot, online)
  }
}

function lookUpPresence(user) {
  state.online.set(user, undefined)
  api('GET', `/api/presence?user=${encodeURIComponent(user)}`)
    .then((presence) => setPresence(user, presence.online))
    .catch((e) => {
      // Asked again in a moment, and on the next (re)connect.
      state.online.delete(user)
      console.warn('[notifications]', e.message)
      setTimeout(() => {
        if (state.user && !state.online.has(user)) lookUpPresence(user)
      }, 2000)
    })
}

// Joins and leaves missed while disconnected: ask again for every sender.
function refreshPresence() {
  for (const user of new Set([...state.announcements.values()].map((a) => a.from))) lookUpPresence(user)
  refreshMembers()
}

// Who of the org is online, with their tabs: listed on (re)connect and
// again whenever a member's first tab opens or last one closes.
let membersAsked = null
function refreshMembers() {
  if (!state.org) return
  const org = state.org
  const asked = api('GET', `/api/presence?org=${encodeURIComponent(org)}`)
  membersAsked = asked
  asked
    .then((members) => {
      if (membersAsked !== asked || state.org !== org) return
      $('members').replaceChildren(
        ...members.map(({user, streams}) => {
          const item = document.createElement('li')
          item.dataset.user = user
          item.dataset.streams = String(streams)
          item.textContent = `${user} (${streams} ${streams === 1 ? 'tab' : 'tabs'})`
          return item
        }),
      )
    })
    .catch((e) => console.warn('[notifications]', e.message))
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
    // A link off this site says where it leads: any user can send one.
    const offSite = !href.startsWith('/')
    link.textContent = offSite ? `${href} (leaves this site: ${new URL(href).host})` : href
    if (offSite) link.classList.add('off-site')
  } else {
    link.remove()
  }
  // Set by the server from the sender's session, never by the sender.
  const from = notification.data?.from
  item.querySelector('.sender').textContent = typeof from === 'string' ? `from ${from}` : 'from the system'

  const time = item.querySelector('.time')
  time.dateTime = notification.createdAt
  time.textContent = new Date(notification.createdAt).toLocaleString()
  item.querySelector('.read').addEventListener('click', () => act('POST', `/api/notifications/${notification.id}/read`))
  item.querySelector('.delete').addEventListener('click', () => act('DELETE', `/api/notifications/${notification.id}`))
  return item
}

async function act(method, path) {
  try {
    // Every tab updates from the change event, streaming or polling.
    await api(method, path)
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
  stopLive()
  // `?share=0` gives every tab its own stream, as before the shared client
  // (for comparisons: examples/browser/tabs-bench.mjs).
  const query = new URLSearchParams(location.search)
  const share = query.get('share') !== '0'
  // Tabs share a stream only with tabs of the same user; the stream says
  // whose it is, and a mismatch (someone logged in as another user in
  // another tab) stops it before anything of it is shown.
  const client = new SseClient(STREAM, {
    user: state.user,
    pollInterval: POLL_MS,
    share,
    // For the browser tests: shorter waits than a real network needs.
    connectTimeout: Number(query.get('connectTimeout')) || undefined,
    failuresBeforePolling: Number(query.get('failuresBeforePolling')) || undefined,
    pollsBeforeStreaming: Number(query.get('pollsBeforeStreaming')) || undefined,
  })
  state.client = client
  // For the browser tests (and curious developers): which tab leads.
  window.notificationsClient = client
  let fresh = true
  const live = (status) => {
    setStatus(status === 'open' ? 'connected' : status === 'closed' ? 'offline' : status)
    // The shared stream starts from now and replays nothing: once live
    // events flow (this tab's stream, or the leading tab's), fetch the
    // current state; events arriving meanwhile wait for it.
    if (fresh && (status === 'open' || status === 'polling')) {
      fresh = false
      loadAll().catch((e) => console.warn('[notifications]', e.message))
    }
  }
  client.onStateChange(live)
  client.onUnauthorized(() => showLogin())
  // The cookie is another user's now: show that user's inbox, not a mix.
  client.onUserChange(() => location.reload())
  // Presence may have changed while the stream was away.
  client.on('connected', () => refreshPresence())
  client.on('notification', (event) => apply(event.json()))
  client.on('announcement', (event) => addAnnouncement(event.json()))
  client.on('presence', (event) => {
    const {user, online} = event.json()
    setPresence(user, online)
    refreshMembers()
  })
  // History is gone: refetch; the client resumes from the id the reset carries.
  client.on('reset', () => loadAll().catch((e) => console.warn('[notifications]', e.message)))
  live(client.state)
}

function stopLive() {
  if (state.client) state.client.close()
  state.client = null
}

function showLogin() {
  stopLive()
  state.user = null
  $('login-view').hidden = false
  $('app-view').hidden = true
  $('account').hidden = true
  $('bell').hidden = true
  setStatus('offline')
}

function startApp(user, org) {
  state.user = user
  state.org = org || null
  $('whoami').textContent = org ? `${user} @ ${org}` : user
  $('announcements-panel').hidden = !org
  $('org-name').textContent = org || ''
  for (const name of document.querySelectorAll('.org-name')) name.textContent = org || ''
  $('members').replaceChildren()
  $('login-view').hidden = true
  $('app-view').hidden = false
  $('account').hidden = false
  $('bell').hidden = false
  connect()
}

// Tabs of this browser share the cookie, so a login or logout in one tab
// changes who every tab is: each follows it at once (a tab's stream would
// notice at its next reconnect; `?followLogins=0` leaves it to that).
const sessionChannel =
  typeof BroadcastChannel === 'function' && new URLSearchParams(location.search).get('followLogins') !== '0'
    ? new BroadcastChannel('notifications-session')
    : null
if (sessionChannel) {
  sessionChannel.onmessage = ({data}) => {
    if (data?.kind === 'login' && data.user !== state.user) location.reload()
    if (data?.kind === 'logout' && state.user) showLogin()
  }
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const user = $('login-user').value.trim()
  const org = $('login-org').value.trim()
  $('login-error').textContent = ''
  try {
    await api('POST', '/api/login', org ? {user, org} : {user})
    sessionChannel?.postMessage({kind: 'login', user})
    startApp(user, org)
  } catch (error) {
    $('login-error').textContent = error.message
  }
})

$('logout').addEventListener('click', async () => {
  try {
    await api('POST', '/api/logout')
  } finally {
    sessionChannel?.postMessage({kind: 'logout'})
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
  } catch (error) {
    $('send-result').textContent = error.field ? `${error.field}: ${error.message}` : error.message
  }
})

$('announce-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const form = new FormData(event.target)
  try {
    await api('POST', '/api/announcements', {title: form.get('title'), message: form.get('message')})
    $('announce-result').textContent = `Announced to ${state.org}.`
    event.target.reset()
  } catch (error) {
    $('announce-result').textContent = error.field ? `${error.field}: ${error.message}` : error.message
  }
})

$('mark-all-read').addEventListener('click', () => act('POST', '/api/notifications/read-all'))
$('delete-read').addEventListener('click', () => act('DELETE', '/api/notifications?read=true'))
$('more').addEventListener('click', () => loadMore().catch((e) => console.warn('[notifications]', e.message)))

fetch('/api/session', {credentials: 'same-origin'})
  .then(async (response) => {
    if (!response.ok) return showLogin()
    const session = await response.json()
    startApp(session.user, session.org)
  })
  .catch(() => showLogin())
