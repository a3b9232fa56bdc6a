import { expect } from "./expect";

import { inlineCompletionMiddleware, rewriteConfiguration } from "../src/middleware";
import { StatusModel } from "../src/status";

describe("inline completion middleware", () => {
  it("returns nothing and sends no request while disabled", () => {
    const status = new StatusModel();
    let calls = 0;
    const mw = inlineCompletionMiddleware({ isEnabled: () => false, status });
    const result = mw("doc", 1, {}, {}, () => {
      calls += 1;
      return ["item"];
    });
    expect(result).toBeNull();
    expect(calls).toBe(0);
  });

  it("marks the status generating until the request settles", async () => {
    const status = new StatusModel();
    status.serverRunning();
    let settled = 0;
    const mw = inlineCompletionMiddleware({ isEnabled: () => true, status, onSettled: () => settled++ });
    let resolve!: (v: string[]) => void;
    const pending = mw("doc", 1, {}, {}, () => new Promise<string[]>((r) => (resolve = r)));
    expect(status.phase()).toBe("generating");
    resolve(["item"]);
    expect(await pending).toEqual(["item"]);
    expect(status.phase()).toBe("idle");
    expect(settled).toBe(1);
  });

  it("settles on errors and synchronous results too", async () => {
    const status = new StatusModel();
    status.serverRunning();
    const mw = inlineCompletionMiddleware({ isEnabled: () => true, status });
    await expect(Promise.resolve(mw("d", 1, {}, {}, () => Promise.reject(new Error("boom"))))).rejects.toThrow("boom");
    expect(status.inflightCount()).toBe(0);
    expect(mw("d", 1, {}, {}, () => ["x"])).toEqual(["x"]);
    expect(() =>
      mw("d", 1, {}, {}, () => {
        throw new Error("sync");
      }),
    ).toThrow("sync");
    expect(status.inflightCount()).toBe(0);
  });
});

describe("workspace/configuration", () => {
  it("answers the starcoder section with the server's settings only", () => {
    const raw = { enable: true, server: { command: "x" }, model: "m" };
    const out = rewriteConfiguration([{ section: "starcoder" }, { section: "editor" }], [raw, { tabSize: 4 }], () => ({ model: "m" }));
    expect(out).toEqual([{ model: "m" }, { tabSize: 4 }]);
  });
});
