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
/**
 * Below this inline cost a signature may run inline while the turn's budget lasts: SoftHSM's ECDSA
 * (0.05 ms) and EdDSA (0.15 ms, more under load). Dearer ones (a network HSM's round trip) always
 * run on token threads.
 */
const CHEAP_MS = 1;

/** Running mean of the inline duration of each mechanism, in ms. */
const cost = new Map<number, number>();
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
      // A sample far above the mean (a GC pause, a page fault) moves it a little, not tenfold.
      const mean = cost.get(costKey);
      cost.set(costKey, mean === undefined ? ms : mean * 0.9 + Math.min(ms, mean * 4) * 0.1);
    }
    scheduleTurn();
  },
  /** Whether work of this kind is cheap enough to sign inline while the turn's budget lasts (unknown: yes). */
  cheap(costKey: number): boolean {
    return (cost.get(costKey) ?? 0) < CHEAP_MS;
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
