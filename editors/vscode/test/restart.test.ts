import { expect } from "./expect";

import { CrashBudget, Debouncer } from "../src/restart";

describe("Debouncer", () => {
  it("lets one action through per interval", () => {
    let t = 1000;
    const d = new Debouncer(5000, () => t);
    expect(d.tryAcquire()).toBe(true);
    t += 100;
    expect(d.tryAcquire()).toBe(false);
    expect(d.remainingMs()).toBe(4900);
    t += 4900;
    expect(d.tryAcquire()).toBe(true);
  });
});

describe("CrashBudget", () => {
  it("allows restarts until max crashes within the window", () => {
    let t = 0;
    const b = new CrashBudget(3, 60_000, () => t);
    expect(b.record()).toBe(true);
    t += 10_000;
    expect(b.record()).toBe(true);
    t += 10_000;
    expect(b.record()).toBe(false);
    expect(b.count()).toBe(3);
  });

  it("forgets crashes older than the window", () => {
    let t = 0;
    const b = new CrashBudget(3, 60_000, () => t);
    b.record();
    b.record();
    t += 61_000;
    expect(b.record()).toBe(true);
    expect(b.count()).toBe(1);
  });
});
