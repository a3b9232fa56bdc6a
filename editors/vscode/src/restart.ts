/** Rate limits: the restart command's debounce and the crash budget of the error handler. */

/** Runs an action at most once per `intervalMs`; calls in between are dropped. */
export class Debouncer {
  private last = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** True (and `last` updated) when the action may run now. */
  tryAcquire(): boolean {
    const t = this.now();
    if (t - this.last < this.intervalMs) return false;
    this.last = t;
    return true;
  }

  /** Milliseconds until {@link tryAcquire} would succeed. */
  remainingMs(): number {
    return Math.max(0, this.last + this.intervalMs - this.now());
  }
}

/**
 * Counts server crashes in a sliding window: {@link record} says whether to restart once more
 * (fewer than `max` crashes within `windowMs`) or give up.
 */
export class CrashBudget {
  private times: number[] = [];

  constructor(
    readonly max = 3,
    readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  record(): boolean {
    const t = this.now();
    this.times = this.times.filter((x) => t - x < this.windowMs);
    this.times.push(t);
    return this.times.length < this.max;
  }

  count(): number {
    const t = this.now();
    return this.times.filter((x) => t - x < this.windowMs).length;
  }

  reset(): void {
    this.times = [];
  }
}
