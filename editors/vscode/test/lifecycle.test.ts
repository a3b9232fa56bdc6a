import { expect } from "./expect";

import { ACTION_COPY_INSTALL, ServerLifecycle, type ClientHandle } from "../src/lifecycle";
import type { Launch } from "../src/settings";
import { StatusModel } from "../src/status";
import { FakeHost } from "./fakes";

class FakeClient implements ClientHandle {
  running = false;
  stops = 0;
  constructor(
    private readonly fail?: Error,
    private readonly status: unknown = { model: "tiny", backend: "llamacpp", backend_ok: true },
  ) {}
  async start() {
    if (this.fail) throw this.fail;
    this.running = true;
  }
  async stop() {
    this.running = false;
    this.stops += 1;
  }
  isRunning() {
    return this.running;
  }
  async executeCommand<T>(command: string): Promise<T> {
    if (command === "starcoder.status") return this.status as T;
    return null as T;
  }
}

function setup(opts: { exists?: boolean; fail?: Error } = {}) {
  let t = 0;
  const host = new FakeHost();
  const status = new StatusModel();
  const clients: FakeClient[] = [];
  const launches: Launch[] = [];
  const lc = new ServerLifecycle({
    host,
    status,
    readLaunch: () => ({ command: "starcoder-ls", args: [] }),
    resolve: (l) => (opts.exists === false ? undefined : `/usr/bin/${l.command}`),
    createClient: (l) => {
      launches.push(l);
      const c = new FakeClient(opts.fail);
      clients.push(c);
      return c;
    },
    now: () => t,
    restartIntervalMs: 5_000,
  });
  return { host, status, clients, launches, lc, tick: (ms: number) => (t += ms) };
}

describe("ServerLifecycle", () => {
  it("starts the server and reads its status", async () => {
    const { lc, status, clients } = setup();
    expect(await lc.start()).toBe(true);
    expect(clients).toHaveLength(1);
    expect(lc.isRunning()).toBe(true);
    expect(status.phase()).toBe("idle");
    expect(status.view().text).toContain("tiny");
  });

  it("a missing command gives one clear error and spawns nothing", async () => {
    const { lc, host, clients, status } = setup({ exists: false });
    host.answer = ACTION_COPY_INSTALL;
    expect(await lc.start()).toBe(false);
    expect(clients).toHaveLength(0);
    expect(host.messages).toHaveLength(1);
    expect(host.messages[0].level).toBe("error");
    expect(host.messages[0].text).toContain("pip install starcoder-ls");
    expect(host.clipboard).toBe("pip install starcoder-ls");
    expect(status.phase()).toBe("error");
  });

  it("a server failing at start is reported once, not retried", async () => {
    const { lc, host, status } = setup({ fail: new Error("exited with code 1") });
    expect(await lc.start()).toBe(false);
    expect(lc.onClosed()).toBe(false); // the client's close handler must not restart it
    expect(host.messages.filter((m) => m.level === "error")).toHaveLength(1);
    expect(host.messages[0].text).toContain("exited with code 1");
    expect(status.phase()).toBe("error");
  });

  it("restarts after crashes until 3 within a minute, then gives up with one message", async () => {
    const { lc, host, tick, status } = setup();
    await lc.start();
    tick(1000);
    expect(lc.onClosed()).toBe(true);
    lc.onRestarted();
    tick(1000);
    expect(lc.onClosed()).toBe(true);
    lc.onRestarted();
    tick(1000);
    expect(lc.onClosed()).toBe(false);
    expect(lc.onClosed()).toBe(false);
    await Promise.resolve();
    expect(host.messages.filter((m) => m.level === "error")).toHaveLength(1);
    expect(host.messages[0].text).toContain("will not be restarted automatically");
    expect(status.phase()).toBe("error");
  });

  it("the restart command is debounced", async () => {
    const { lc, clients, host, tick } = setup();
    await lc.start();
    tick(10_000);
    expect(await lc.restart()).toBe(true);
    expect(clients).toHaveLength(2);
    expect(clients[0].stops).toBe(1);
    tick(1_000);
    expect(await lc.restart()).toBe(false);
    expect(clients).toHaveLength(2);
    expect(host.messages.at(-1)?.text).toContain("try again in 4 s");
    tick(4_000);
    expect(await lc.restart()).toBe(true);
    expect(clients).toHaveLength(3);
  });

  it("a restart after giving up starts with a fresh crash budget", async () => {
    const { lc, tick } = setup();
    await lc.start();
    lc.onClosed();
    lc.onRestarted();
    lc.onClosed();
    lc.onRestarted();
    expect(lc.onClosed()).toBe(false);
    tick(10_000);
    expect(await lc.restart()).toBe(true);
    expect(lc.onClosed()).toBe(true);
  });

  it("executeCommand refuses while stopped", async () => {
    const { lc } = setup();
    await expect(lc.executeCommand("starcoder.stats", [])).rejects.toThrow("not running");
  });
});
