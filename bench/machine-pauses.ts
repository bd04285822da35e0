/**
 * Pauses of the whole machine, seen from a separate process that does nothing but wake up every
 * few milliseconds. A virtual machine is stopped now and then by its host: on this project's 2-core VM,
 * idle, a C program sleeping 1 ms at a time woke up to 70 ms late, in step with a second one, and a
 * Node process doing nothing saw 28-54 ms in 3 runs of 8 (10 s each). No code in the benchmarked
 * process can cause or avoid such a pause, so each row's event-loop delay is also given net of them.
 *
 * Times are ms on the monotonic clock (`process.hrtime`, CLOCK_MONOTONIC on Linux), which every
 * process of the machine shares.
 */
import { spawn, type ChildProcess } from "node:child_process";

/** A span of time in which the probe could not run: [from, to], ms on the monotonic clock. */
export interface Pause {
  from: number;
  to: number;
}

/** A wake-up this much later than asked for is a pause. */
export const LATE_MS = 4;

/**
 * How often the probe wakes up. Each wake-up, at nice -10, preempts a benchmark thread when every
 * core is busy: at 1 ms that cost the main-thread-bound rows (HS256) ~4%, and not the single-thread
 * raw loop beside an idle core. At 5 ms the cost is a fifth, and a pause still shows to within 5 ms.
 */
const PERIOD_MS = 5;

export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/**
 * The probe: a timer every PERIOD_MS; each late wake-up is written as "<due> <woke>". It first asks for
 * nice -10, so that the benchmark's own threads do not delay it (allowed to root, or with
 * CAP_SYS_NICE; refused otherwise), and says "ready <its nice value>".
 */
const PROBE = `
const os = require("node:os");
try { os.setPriority(0, -10); } catch {}
const now = () => Number(process.hrtime.bigint()) / 1e6;
let last = now();
setInterval(() => {
  const t = now();
  if (t - last - ${PERIOD_MS} > ${LATE_MS}) process.stdout.write((last + ${PERIOD_MS}) + " " + t + "\\n");
  last = t;
}, ${PERIOD_MS});
process.stdin.on("end", () => process.exit(0)).resume();
process.stdout.write("ready " + os.getPriority(0) + "\\n");
`;

export class MachinePauses {
  readonly #child: ChildProcess;
  readonly #pauses: Pause[] = [];
  readonly #ready: Promise<void>;
  /** The probe's nice value: at 0 or above, CPU contention from the benchmark delays it too, and counts as a pause. */
  nice = 0;

  private constructor(child: ChildProcess) {
    this.#child = child;
    let ready!: () => void;
    this.#ready = new Promise((resolve) => (ready = resolve));
    let rest = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith("ready ")) {
          this.nice = Number(line.slice(6));
          ready();
        }
        const [from, to] = line.split(" ").map(Number);
        if (Number.isFinite(from) && Number.isFinite(to)) this.#pauses.push({ from: from!, to: to! });
      }
    });
  }

  /** Start the probe; resolves once its timer runs. */
  static async start(): Promise<MachinePauses> {
    const child = spawn(process.execPath, ["-e", PROBE], { stdio: ["pipe", "pipe", "inherit"] });
    const probe = new MachinePauses(child);
    await new Promise<void>((resolve, reject) => {
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(`the probe ended (${code}) before it ran`)));
      probe.#ready.then(resolve);
    });
    child.removeAllListeners("exit");
    child.unref();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    return probe;
  }

  /** The pauses that overlap [from, to]; those reported late are there once the probe caught up. */
  async within(from: number, to: number): Promise<Pause[]> {
    await new Promise((resolve) => setTimeout(resolve, LATE_MS * 5));
    return this.#pauses.filter((p) => p.to > from && p.from < to);
  }

  /** The probe's process id (a test stops it to make a pause). */
  get pid(): number {
    return this.#child.pid!;
  }

  stop(): void {
    this.#child.stdin?.end();
    this.#child.kill();
  }
}

/** How much of [from, to] the pauses cover (they may overlap one another). */
export function covered(from: number, to: number, pauses: readonly Pause[]): number {
  let total = 0;
  let reached = from;
  for (const p of [...pauses].sort((a, b) => a.from - b.from)) {
    const start = Math.max(p.from, reached);
    const end = Math.min(p.to, to);
    if (end > start) {
      total += end - start;
      reached = end;
    }
  }
  return total;
}
