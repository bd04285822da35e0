/**
 * The choice between one signing thread and several, made from measured throughput: driven here
 * by a fake clock and counts, since the point is the decision rule, not a token's speed (the
 * sign-thread tests run real signatures through it).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { SpreadChoice } from "../src/pkcs11/spread-choice.js";

/** Run `windows` windows of 250 ms in which the choice signs at `rate(spread)` signatures per ms; return the ways taken. */
function drive(choice: SpreadChoice, clock: { t: number }, windows: number, rate: (spread: boolean) => number): boolean[] {
  const ways: boolean[] = [];
  for (let w = 0; w < windows; w++) {
    const spread = choice.spread;
    ways.push(spread);
    const n = Math.round(rate(spread) * 250);
    for (let i = 0; i < n; i++) choice.signed();
    clock.t += 250;
  }
  return ways;
}

test("a token that serialises the mechanism: after one window of trying, signatures keep to one thread", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  const ways = drive(choice, clock, 14, (spread) => (spread ? 12 : 19));
  assert.deepEqual(ways.slice(0, 3), [false, true, false], "measures one way, then the other, then keeps the faster");
  assert.deepEqual(ways.slice(2, 14), Array(12).fill(false));
  // After KEEP windows the other way is measured again, once, and left again.
  assert.deepEqual(drive(choice, clock, 3, (spread) => (spread ? 12 : 19)), [true, false, false]);
});

test("a token that scales: signatures spread over threads", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  const ways = drive(choice, clock, 10, (spread) => (spread ? 8.4 : 6.4));
  assert.deepEqual(ways.slice(0, 2), [false, true]);
  assert.deepEqual(ways.slice(1), Array(9).fill(true));
});

test("windows with too few signatures (no load) decide nothing", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  assert.deepEqual(drive(choice, clock, 20, () => 0.1), Array(20).fill(false));
});

test("when the load changes which way is faster, the choice follows within a keep period", () => {
  const clock = { t: 0 };
  const choice = new SpreadChoice(() => clock.t);
  drive(choice, clock, 6, (spread) => (spread ? 8 : 6));
  assert.equal(choice.spread, true);
  const ways = drive(choice, clock, 30, (spread) => (spread ? 3 : 6));
  assert.equal(ways.at(-1), false);
});
