/**
 * How much synchronous token work the main thread does per event-loop turn.
 *
 * Inline calls resolve their promises at once, so a burst of them chains through microtasks and
 * starves timers and I/O. Inline work may take INLINE_BUDGET_MS per turn; past that, calls that
 * cost more than a thread hop (measured per mechanism) go to a pkcs11js worker thread, where they
 * run beside the main thread on another core, and cheaper ones queue for the next turn, where they
 * run in arrival order while that turn's budget lasts.
 */
export type Placement = "inline" | "either" | "thread";

const INLINE_BUDGET_MS = 2;
/** What handing a call to a worker thread costs the main thread, with margin (pkcs11js async call, measured 50-100 µs). */
const THREAD_HOP_MS = 0.12;

/** Offset of the cost key of a mechanism measured while the signing thread was busy. */
export const CONTENDED = 2 ** 32;

/** Running mean of the inline duration of each mechanism, in ms, and how many samples made it. */
const cost = new Map<number, number>();
const samples = new Map<number, number>();
/** Samples needed before a mechanism is judged contended; then one call in PROBE_EVERY still measures. */
const MIN_SAMPLES = 16;
const PROBE_EVERY = 32;
let probe = 0;
const queue: (() => void)[] = [];
let spent = 0;
let turnScheduled = false;
let draining = false;

function scheduleTurn(): void {
  if (turnScheduled) return;
  turnScheduled = true;
  setImmediate(newTurn);
}

/** A new event-loop turn: a fresh budget, spent first on the calls that waited for it. */
function newTurn(): void {
  turnScheduled = false;
  spent = 0;
  draining = true;
  try {
    while (queue.length > 0 && spent < INLINE_BUDGET_MS) queue.shift()!();
  } finally {
    draining = false;
  }
  if (queue.length > 0) scheduleTurn();
}

export const inlineBudget = {
  available(): boolean {
    // While calls wait for a turn, newcomers queue behind them (FIFO) unless the queue is being served.
    return spent < INLINE_BUDGET_MS && (queue.length === 0 || draining);
  },
  charge(ms: number, costKey?: number): void {
    spent += ms;
    if (costKey !== undefined) {
      cost.set(costKey, (cost.get(costKey) ?? ms) * 0.9 + ms * 0.1);
      samples.set(costKey, (samples.get(costKey) ?? 0) + 1);
    }
    scheduleTurn();
  },
  /**
   * Whether this mechanism signs markedly slower inline while the signing thread is busy: the
   * token (nearly) serialises it, so signing on both threads gains little. Two threads whose
   * operations each take r times longer together give 2/r the throughput: below ~1.15x
   * (r > 1.7) it is not worth the main thread's time. SoftHSM 2.6: ECDSA r≈1.95, EdDSA r≈1.45.
   */
  contended(costKey: number): boolean {
    const alone = cost.get(costKey);
    const together = cost.get(costKey + CONTENDED);
    if (alone === undefined || together === undefined || (samples.get(costKey + CONTENDED) ?? 0) < MIN_SAMPLES) return false;
    if (++probe % PROBE_EVERY === 0) return false; // keep measuring: the token's behaviour may change
    return together > alone * 1.7;
  },
  /** Whether work of this kind costs more inline than a thread hop (unknown: not worth it). */
  worthAThread(costKey: number | undefined): boolean {
    return costKey !== undefined && (cost.get(costKey) ?? 0) > THREAD_HOP_MS;
  },
  /** Run `job` on a later turn, in arrival order, when that turn's budget allows. */
  defer(job: () => void): void {
    queue.push(job);
    scheduleTurn();
  },
};
