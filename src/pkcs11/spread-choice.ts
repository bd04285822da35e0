/**
 * Whether the operations with one mechanism spread over several threads, or keep to one.
 *
 * Some tokens serialise a mechanism inside (SoftHSM 2.6's ECDSA: two threads together sign no
 * faster than one; NSS softoken's RSA), so every extra caller only adds contention; others run it
 * on every core (SoftHSM's EdDSA: 1.3x on two, its RSA 1.8x). Which is which is measured where it
 * matters, as throughput under the current load, in windows of WINDOW_MS: the way in use is
 * measured, then the other, then the first again (so that a load or a JIT warming up in between
 * does not favour the later way); the other is taken if it was faster by MARGIN, and the way
 * chosen is kept for KEEP windows before the next such comparison. It starts spread.
 *
 * Not every window counts. The first SETTLE_MS after a change are not measured (threads start,
 * queues drain). A window is not load, and says nothing, if it saw fewer than MIN_DONE operations
 * or if the threads ever had fewer than QUEUED operations waiting when another came: then the rate
 * is the callers', not the token's. A load that doubles or halves (operations waiting, on average
 * over a window, against the window that made the last decision) calls for a comparison at once:
 * the best way at 8 callers need not be the best at 64; unless that decision was DECISIVE (one way
 * that much faster, as RSA on SoftHSM's two threads, 1.8x), which a change of load does not
 * overturn, and which the periodic comparison still checks. Each comparison costs the slower way
 * for a window (a row of `npm run bench` at 64 callers lost ~5% of its RSA throughput to one).
 */
const WINDOW_MS = 150;
const SETTLE_MS = 50;
const KEEP = 40;
const MIN_DONE = 32;
const QUEUED = 4;
/** The other way must be this much faster to be taken: ties (a load that does not fill the threads) keep the way in use. */
const MARGIN = 1.05;
const DECISIVE = 1.25;

export class SpreadChoice {
  /** Spread until measured otherwise: most tokens run operations on several threads at once. */
  #spread = true;
  #windowStart: number;
  #settling = false;
  #done = 0;
  #starved = false;
  /** Operations waiting, summed over this window's handings, and how many handings. */
  #queuedSum = 0;
  #handings = 0;
  /** Mean operations waiting in the window that made the last decision. */
  #decidedAt = 0;
  #keepFor = 1;
  /** Whether the last comparison found one way DECISIVE-ly faster. */
  #decisive = false;
  /** Of a comparison: 0 none under way; 1 the other way is being measured; 2 the first way again. */
  #phase = 0;
  /** Operations per ms: the way kept, before the comparison, and the other way. */
  #before = 0;
  #other = 0;

  constructor(readonly now: () => number = () => performance.now()) {
    this.#windowStart = now();
  }

  /** Whether the next operation may go to any thread (else to the first thread only). */
  get spread(): boolean {
    const now = this.now();
    const elapsed = now - this.#windowStart;
    if (elapsed >= (this.#settling ? SETTLE_MS : WINDOW_MS)) this.#endWindow(now);
    return this.#spread;
  }

  /** An operation with this mechanism is about to be handed to the threads, which have `queued` waiting. */
  handing(queued: number): void {
    if (queued < QUEUED) this.#starved = true;
    this.#queuedSum += queued;
    this.#handings++;
  }

  /** One operation with this mechanism finished. */
  done(): void {
    this.#done++;
  }

  #endWindow(now: number): void {
    const measured = !this.#settling && !this.#starved && this.#done >= MIN_DONE;
    const queued = this.#handings ? this.#queuedSum / this.#handings : 0;
    this.#starved = false;
    this.#queuedSum = this.#handings = 0;
    const elapsed = now - this.#windowStart;
    this.#settling = false;
    this.#windowStart = now;
    const done = this.#done;
    this.#done = 0;
    if (!measured) return;
    const rate = done / elapsed;
    if (this.#phase === 1) {
      this.#other = rate;
      this.#phase = 2;
      this.#change();
    } else if (this.#phase === 2) {
      this.#phase = 0;
      this.#keepFor = KEEP;
      this.#decidedAt = queued;
      const kept = (this.#before + rate) / 2;
      this.#decisive = Math.max(kept, this.#other) >= Math.min(kept, this.#other) * DECISIVE;
      if (this.#other > kept * MARGIN) this.#change();
    } else if (--this.#keepFor <= 0 || (!this.#decisive && (queued > 2 * this.#decidedAt || queued < this.#decidedAt / 2))) {
      this.#before = rate;
      this.#phase = 1;
      this.#change();
    }
  }

  #change(): void {
    this.#spread = !this.#spread;
    this.#settling = true;
  }
}
