/**
 * The event-loop delay over one row, two ways: Node's histogram (`monitorEventLoopDelay`: max and
 * p99), and the longest delay net of the machine's pauses (machine-pauses.ts). For the second, a 1
 * ms timer of our own notes when each late wake-up happened; the part of it during which a separate
 * process could not run either is the machine's, the rest is this process's.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import { covered, LATE_MS, monotonicMs, type MachinePauses, type Pause } from "./machine-pauses.js";

export interface LoopFigures {
  /**
   * The longest delay, ms: Node's histogram's, or our timer's where that is longer (Node's loses a
   * delay that spans a reset, see restart()).
   */
  max: number;
  /** Node's histogram, ms. */
  p99: number;
  /** The longest delay of the event loop less the machine's pauses during it, ms. */
  netMax: number;
  /** The longest machine pause during the row, ms (0: none over LATE_MS; undefined: no probe). */
  machineMax: number | undefined;
}

export class LoopDelay {
  readonly #histogram: IntervalHistogram;
  readonly #timer: NodeJS.Timeout;
  readonly #machine: MachinePauses | undefined;
  #from = monotonicMs();
  /** Late wake-ups over LATE_MS, when they happened. */
  readonly #late: Pause[] = [];
  /** The longest delay not over LATE_MS (those are not kept one by one). */
  #smallMax = 0;

  private constructor(machine: MachinePauses | undefined) {
    this.#machine = machine;
    this.#histogram = monitorEventLoopDelay({ resolution: 1 });
    this.#histogram.enable();
    // As Node's histogram, the first tick only sets the baseline: a delay before it is not counted.
    let last: number | undefined;
    this.#timer = setInterval(() => {
      const now = monotonicMs();
      if (last === undefined) return void (last = now);
      const late = now - last - 1;
      if (late > LATE_MS) this.#late.push({ from: last + 1, to: now });
      else if (late > this.#smallMax) this.#smallMax = late;
      last = now;
    }, 1);
  }

  /** Start watching; resolves once the timers run. */
  static async start(machine: MachinePauses | undefined): Promise<LoopDelay> {
    const watch = new LoopDelay(machine);
    await new Promise((resolve) => setTimeout(resolve, 5));
    return watch;
  }

  /**
   * Forget what was seen so far, and go on watching (at the end of a warm-up). The timers keep
   * running: started only now, in the middle of work that never yields (callers failing at once,
   * retrying in microtasks), they would have no first tick before that work ends, and record nothing.
   * Node's histogram forgets its last tick too when reset, so a delay under way is ours alone.
   */
  restart(): void {
    this.#histogram.reset();
    this.#late.length = 0;
    this.#smallMax = 0;
    this.#from = monotonicMs();
  }

  /**
   * Stop, after one more turn of the event loop: if the work never yielded to it (synchronous work
   * chained by microtasks), the timers fire only now, late by the whole row, and that is recorded.
   */
  async stop(): Promise<LoopFigures> {
    await new Promise((resolve) => setTimeout(resolve, 5));
    clearInterval(this.#timer);
    this.#histogram.disable();
    const to = monotonicMs();
    const pauses = this.#machine ? await this.#machine.within(this.#from, to) : [];
    let netMax = this.#smallMax;
    let ownMax = this.#smallMax;
    for (const late of this.#late) {
      ownMax = Math.max(ownMax, late.to - late.from);
      netMax = Math.max(netMax, late.to - late.from - covered(late.from, late.to, pauses));
    }
    return {
      max: Math.max(this.#histogram.max / 1e6, ownMax),
      p99: this.#histogram.percentile(99) / 1e6,
      netMax,
      machineMax: this.#machine ? Math.max(0, ...pauses.map((p) => p.to - p.from)) : undefined,
    };
  }
}
