/**
 * A short synchronous pause, for the few places that wait inside a synchronous PKCS#11 sequence
 * (a login retry, a lock file, a second attribute read). Never used on an operation's hot path.
 */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
