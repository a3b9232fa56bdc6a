import { expect } from "./expect";

import { COMMAND_RESTART, COMMAND_TOGGLE, StatusModel } from "../src/status";

describe("StatusModel", () => {
  it("goes starting -> idle -> generating -> idle with the model name", () => {
    const s = new StatusModel();
    const seen: string[] = [];
    s.onChange(() => seen.push(s.phase()));
    s.serverStarting();
    expect(s.phase()).toBe("starting");
    s.serverRunning();
    s.setServerStatus({ model: "tiny", backend: "llamacpp", backend_ok: true, version: "0.1" });
    expect(s.phase()).toBe("idle");
    expect(s.view().text).toContain("tiny");
    s.requestStarted();
    s.requestStarted();
    expect(s.phase()).toBe("generating");
    expect(s.view().text).toContain("loading~spin");
    s.requestFinished();
    expect(s.phase()).toBe("generating");
    s.requestFinished();
    s.requestFinished(); // extra finish is ignored
    expect(s.phase()).toBe("idle");
    expect(s.inflightCount()).toBe(0);
    expect(seen).toEqual(["starting", "idle", "idle", "generating", "idle"]);
  });

  it("shows an error when the backend failed to load, clicking restarts", () => {
    const s = new StatusModel();
    s.serverRunning();
    s.setServerStatus({ model: "/models/tiny/m.gguf", backend: "llamacpp", backend_ok: false });
    expect(s.phase()).toBe("error");
    expect(s.view().text).toBe("$(error) StarCoder: m.gguf");
    const v = s.view();
    expect(v.kind).toBe("error");
    expect(v.command).toBe(COMMAND_RESTART);
    expect(v.tooltip).toContain("llamacpp");
  });

  it("keeps a server failure visible after stop", () => {
    const s = new StatusModel();
    s.serverFailed("not found");
    s.serverStopped();
    expect(s.phase()).toBe("error");
    expect(s.view().tooltip).toContain("not found");
  });

  it("shows disabled, and clicking toggles", () => {
    const s = new StatusModel();
    s.serverRunning();
    s.setEnabled(false);
    expect(s.phase()).toBe("disabled");
    expect(s.view().command).toBe(COMMAND_TOGGLE);
    expect(s.view().kind).toBe("warning");
    s.setEnabled(true);
    expect(s.phase()).toBe("idle");
  });
});
