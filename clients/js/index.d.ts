/** Where the shared stream stands, as every tab sees it. */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'offline' | 'polling' | 'closed'

/** An event of the stream, delivered once to every tab. */
export interface StreamEvent {
  /** The event name (`message` for unnamed events). */
  readonly type: string
  /** The data, lines joined with `\n`. */
  readonly data: string
  /** The event's id (`''` if it had none). */
  readonly lastEventId: string
  /** `JSON.parse(data)`. */
  json<T = unknown>(): T
}

export interface SseClientOptions {
  /**
   * The user this page shows: the id your server's authenticator gives the
   * stream (the `connected` event's `user`). Tabs share a stream only with
   * tabs of the same user, and a stream that turns out to be another
   * user's is stopped before anything of it is delivered
   * ({@link SseClient.onUserChange}). Default: each tab first learns the
   * user from its own stream's `connected` event, then shares.
   */
  user?: string
  /** Send cookies with the stream and polls (default true). */
  withCredentials?: boolean
  /** Share one stream among the tabs of this origin and user (default true). */
  share?: boolean
  /** The query parameter that carries the last event id on reconnect (default `lastEventId`). */
  lastEventIdParam?: string
  /** Resume after this id (default: from now). */
  lastEventId?: string
  /** Backoff after failed connections and error answers, in ms (default base 1000, cap 30000; full jitter; at least a `Retry-After`). */
  backoff?: {base?: number; cap?: number}
  /** How long a connect may take to answer and send its first bytes, in ms (default 10000). */
  connectTimeout?: number
  /** A stream silent for this many of its announced heartbeats is replaced (default 2.5). */
  missedHeartbeats?: number
  /** Streams in a row that answer but deliver nothing (a buffering proxy) before polling (default 5). */
  failuresBeforePolling?: number
  /** The query parameter that marks a poll, so the server ends its response after the replay (default `poll`; `''` for none). */
  pollParam?: string
  /** Time between polls in ms (default 5000). */
  pollInterval?: number
  /** How long a poll reads the replay, at most, in ms (default 1500). */
  pollWindow?: number
  /** While polling, streaming is tried again every this many polls, and when the browser comes back online (default 6). */
  pollsBeforeStreaming?: number
  /** Reconnect at once when the page becomes visible after this long hidden, in ms (default 60000). */
  hiddenReconnectAfter?: number
  /** The page's globals (default `globalThis`): `fetch`, `BroadcastChannel`, `navigator`, `location`, timers. For tests. */
  scope?: object
}

export declare class SseClient {
  constructor(url: string, options?: SseClientOptions)
  /** The id of the last event any tab of this browser saw. */
  readonly lastEventId: string
  readonly state: ConnectionState
  /** Whether this tab holds the stream for the others. */
  readonly isLeader: boolean
  /** Listens for events named `type`; returns a function that stops listening. */
  on(type: string, listener: (event: StreamEvent) => void): () => void
  onStateChange(listener: (state: ConnectionState) => void): () => void
  /** The server answered 401: the user must log in again. The client stops. */
  onUnauthorized(listener: () => void): () => void
  /**
   * The stream turned out to be `user`'s, not this page's (someone logged
   * in as another user in another tab): the client stopped and delivered
   * none of it. Reload, or show the login.
   */
  onUserChange(listener: (user: string) => void): () => void
  /** The user whose stream this tab shares (as given, or learned from the stream). */
  readonly user: string | null
  /** Stops this tab's part: another tab takes the stream over if this one held it. */
  close(): void
}

/** Opens (or joins) the shared stream at `url`. */
export declare function createClient(url: string, options?: SseClientOptions): SseClient

/** The delay before retry `attempt` (0-based): uniform in [0, min(cap, base * 2^attempt)). */
export declare function fullJitter(attempt: number, options?: {base?: number; cap?: number}, random?: () => number): number
/** Compares two `<epoch>.<position>` ids: sign of a - b, 0 when not comparable. */
export declare function compareCursors(a: string, b: string): number
export declare function parseCursor(id: string): {epoch: string; position: number} | null

export interface ParsedEvent {
  type: string
  data: string
  id: string
}
export type ParsedItem = {kind: 'event'; event: ParsedEvent} | {kind: 'retry'; ms: number} | {kind: 'comment'; text: string}
/** A streaming `text/event-stream` parser (WHATWG rules). */
export declare class EventStreamParser {
  feed(text: string): ParsedItem[]
}

export interface ElectionCallbacks {
  lead(): void
  follow(): void
}
export declare class LockElection {
  constructor(locks: LockManager, name: string, callbacks: ElectionCallbacks)
  join(): void
  leave(): void
}
export declare class HeartbeatElection {
  constructor(channel: {postMessage(message: unknown): void}, callbacks: ElectionCallbacks, options?: {id?: string; interval?: number; timeout?: number; settle?: number})
  join(): void
  leave(): void
  receive(message: unknown): void
}
