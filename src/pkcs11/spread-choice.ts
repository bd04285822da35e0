/**
 * Whether the signatures of one mechanism spread over several threads, or keep to one.
 *
 * Some tokens serialise a mechanism inside (SoftHSM 2.6's ECDSA: two threads together sign no
 * faster than one), so every extra caller only adds contention; others sign on every core
 * (SoftHSM's EdDSA: 1.3x on two). Which is which is measured where it matters, as throughput
 * under the current load: each way is tried for a window of WINDOW_MS, the faster is kept for
 * KEEP windows, then the other is measured again. A window with fewer than MIN_SIGNATURES is not
 * load, and says nothing.
 */
const WINDOW_MS = 250;
const KEEP = 12;
const MIN_SIGNATURES = 64;

export class SpreadChoice {
  #spread = false;
  /** Signatures per ms measured each way (running mean), undefined until measured. */
  readonly #rate: Record<"one" | "spread", number | undefined> = { one: undefined, spread: undefined };
  #windowStart: number;
  #signed = 0;
  #keepFor = 0;

  constructor(readonly now: () => number = () => performance.now()) {
    this.#windowStart = now();
  }

  /** Whether the next signature may go to any thread (else to the first signing thread only). */
  get spread(): boolean {
    const now = this.now();
    if (now - this.#windowStart >= WINDOW_MS) this.#endWindow(now);
    return this.#spread;
  }

  /** One signature of this mechanism finished. */
  signed(): void {
    this.#signed++;
  }

  #endWindow(now: number): void {
    const way = this.#spread ? "spread" : "one";
    if (this.#signed >= MIN_SIGNATURES) {
      const rate = this.#signed / (now - this.#windowStart);
      this.#rate[way] = this.#rate[way] === undefined ? rate : (this.#rate[way]! + rate) / 2;
      const other = this.#rate[this.#spread ? "one" : "spread"];
      if (other === undefined || this.#keepFor-- <= 0) {
        // Measure the other way (again).
        this.#spread = !this.#spread;
        this.#keepFor = KEEP;
      } else if (other > this.#rate[way]!) {
        this.#spread = !this.#spread;
      }
    }
    this.#windowStart = now;
    this.#signed = 0;
  }
}
