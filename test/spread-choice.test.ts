/**
 * The choice between one thread and several, made from measured throughput: driven here by a fake
 * clock and counts, since the point is the decision rule, not a token's speed (the token-thread
 * tests run real operations through it).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { SpreadChoice } from "../src/pkcs11/spread-choice.js";

/** Advance in steps of `stepMs`, finishing `rate(way)` operations per ms; return the way of each step. */
function drive(choice: SpreadChoice, clock: { t: number }, steps: number, rate: (spread: boolean) => number, stepMs = 50, queued = 32): boolean[] {
  const ways: boolean[] = [];
  for (let i = 0; i < steps; i++) {
    const spread = choice.spread;
    ways.push(spread);
    const n = Math.round(rate(spread) * stepMs);
    for (let j = 0; j < n; j++) {
      choice.handing(queued);
      choice.done();
    }
    clock.t += stepMs;
  }
  return ways;
}

/** The fraction of steps that went each way. */
const share = (ways: boolean[], spread: boolean) => ways.filter((w) => w === spread).length / ways.length;

test("a token that serialises the mechanism: after one comparison, operations keep to one thread", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  const ways = drive(choice, clock, 16, (spread) => (spread ? 12 : 19));
  // It starts spread: a window of 150 ms spread; a 50 ms settle and a window on one thread; a
  // settle and a window spread again; then one thread, for good.
  assert.deepEqual(ways.map(Number).join(""), "1110000111100000");
  // Over the next 64 windows of 150 ms it stays there, but for the comparisons every 40 windows.
  assert.ok(share(drive(choice, clock, 3 * 64, (spread) => (spread ? 12 : 19)), false) > 0.95);
});

test("a token that scales: operations spread over threads, and stay spread", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  const ways = drive(choice, clock, 16, (spread) => (spread ? 8.4 : 6.4));
  assert.deepEqual(ways.map(Number).join(""), "1110000111111111");
  assert.ok(share(drive(choice, clock, 3 * 64, (spread) => (spread ? 8.4 : 6.4)), true) > 0.95);
});

test("windows with too few operations (no load) decide nothing", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  assert.deepEqual(drive(choice, clock, 40, () => 0.1), Array(40).fill(true));
});

test("a load that lets the threads' queues run dry (the callers' pace, not the token's) decides nothing", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  assert.deepEqual(drive(choice, clock, 40, (spread) => (spread ? 3 : 9), 50, 1), Array(40).fill(true));
});

test("a load that grows eightfold is compared again at once, not after the keep period", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  // Eight callers: one thread is a little faster.
  drive(choice, clock, 16, (spread) => (spread ? 9 : 10), 50, 8);
  assert.equal(choice.spread, false);
  // Sixty-four: spreading is faster; within a second (20 steps of 50 ms) it spreads.
  const ways = drive(choice, clock, 20, (spread) => (spread ? 14 : 10), 50, 64);
  assert.equal(ways.at(-1), true);
});

test("a decisive verdict (one way 1.3x faster) is not compared again when the load grows eightfold, only after the keep period", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  drive(choice, clock, 16, (spread) => (spread ? 13 : 10), 50, 8);
  assert.equal(choice.spread, true);
  // Sixty-four callers: no comparison (no window on one thread) for the next 5 s...
  assert.deepEqual(drive(choice, clock, 100, (spread) => (spread ? 26 : 20), 50, 64), Array(100).fill(true));
  // ...and one within the keep period of 40 windows of 150 ms.
  assert.ok(drive(choice, clock, 30, (spread) => (spread ? 26 : 20), 50, 64).includes(false));
});

test("a tie (a load that does not fill the threads) keeps the way in use", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  assert.deepEqual(drive(choice, clock, 40, (spread) => (spread ? 3 : 3.1)).slice(12), Array(28).fill(true));
});

test("a load that grows during the comparison does not favour the way measured later", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  // The token serialises (one thread is 1.2x as fast), while the load triples over the comparison.
  let step = 0;
  const ways = drive(choice, clock, 16, (spread) => (1 + step++ / 8) * (spread ? 5 : 6));
  assert.equal(ways.at(-1), false);
});

test("when the load changes which way is faster, the choice follows at the next comparison", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  drive(choice, clock, 16, (spread) => (spread ? 8 : 6));
  assert.equal(choice.spread, true);
  // The next comparison comes within 40 windows of 150 ms (6 s).
  const ways = drive(choice, clock, 3 * 45, (spread) => (spread ? 3 : 6));
  assert.equal(ways.at(-1), false);
});
