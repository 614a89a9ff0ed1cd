// Reconnection delays: exponential growth with "full jitter" (a uniformly
// random delay up to the exponential bound), so that many clients that
// failed together do not come back together.

/**
 * The delay before retry number `attempt` (0 for the first retry).
 * @param {number} attempt
 * @param {{base?: number, cap?: number}} [options] milliseconds
 * @param {() => number} [random] uniform in [0, 1)
 * @returns {number} milliseconds
 */
export function fullJitter(attempt, {base = 1000, cap = 30000} = {}, random = Math.random) {
  const bound = Math.min(cap, base * 2 ** Math.max(0, Math.min(attempt, 30)))
  return Math.floor(random() * bound)
}

/**
 * Compares two ids of streams built on the sse-layer crates
 * (`<epoch>.<position>`): positive when `a` is after `b`, negative when
 * before, 0 when equal or not comparable (another epoch, another shape).
 * @param {string} a
 * @param {string} b
 * @returns {number}
 */
export function compareCursors(a, b) {
  const pa = parseCursor(a)
  const pb = parseCursor(b)
  if (!pa || !pb || pa.epoch !== pb.epoch) return 0
  return Math.sign(pa.position - pb.position)
}

/** @param {string} id */
export function parseCursor(id) {
  const match = /^([a-z2-7]{8})\.([0-9]{1,19})$/.exec(id ?? '')
  return match ? {epoch: match[1], position: Number(match[2])} : null
}
