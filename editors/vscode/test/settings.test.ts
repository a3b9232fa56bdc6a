import { expect } from "./expect";

import { buildServerSettings, classifyChange, flatten, isClientOnly, serverKeys, serverLaunch, unflatten } from "../src/settings";

import pkg from "../package.json";

const properties = pkg.contributes.configuration.properties as Record<string, { default: unknown; type: string }>;

describe("settings", () => {
  it("unflattens dotted keys into nested objects", () => {
    expect(unflatten({ "cache.enabled": false, "cache.diskSizeMb": 8, model: "m", languages: { python: false } })).toEqual({
      cache: { enabled: false, diskSizeMb: 8 },
      model: "m",
      languages: { python: false },
    });
  });

  it("flatten is the inverse of unflatten (object-valued settings kept whole)", () => {
    const nested = { cache: { enabled: true }, workspace: { include: ["src/**"] }, languages: { "*": false } };
    const flat = flatten(nested, new Set(["languages"]));
    expect(flat).toEqual({ "cache.enabled": true, "workspace.include": ["src/**"], languages: { "*": false } });
    expect(unflatten(flat)).toEqual(nested);
  });

  it("knows the client-only keys", () => {
    expect(isClientOnly("enable")).toBe(true);
    expect(isClientOnly("server.command")).toBe(true);
    expect(isClientOnly("cache.enabled")).toBe(false);
    expect(isClientOnly("model")).toBe(false);
  });

  it("builds the server's settings from package.json defaults: nested, no client-only keys", () => {
    const keys = serverKeys(properties);
    expect(keys).not.toContain("enable");
    expect(keys.some((k) => k.startsWith("server."))).toBe(false);
    const built = buildServerSettings(keys, (k) => properties[`starcoder.${k}`].default);
    expect(Object.keys(built)).not.toContain("server");
    expect(Object.keys(built)).not.toContain("enable");
    expect(built.cache).toEqual({ enabled: true, memoryEntries: 512, disk: false, diskPath: "", diskSizeMb: 64 });
    expect((built.workspace as Record<string, unknown>).maxFiles).toBe(10000);
    expect(built.languages).toEqual({});
    expect(built.maxTokens).toBe(64);
  });

  it("skips settings the host does not know (undefined)", () => {
    expect(buildServerSettings(["model", "cache.enabled", "enable"], (k) => (k === "model" ? "x" : undefined))).toEqual({ model: "x" });
  });

  it("launches the command, or python -m starcoder_ls when pythonPath is set", () => {
    const cfg = (c: Record<string, unknown>) => (k: string) => c[k];
    expect(serverLaunch(cfg({ "server.command": "starcoder-ls", "server.args": [] }))).toEqual({ command: "starcoder-ls", args: [] });
    expect(serverLaunch(cfg({ "server.command": " ", "server.args": ["--log-file", "x", 3] }))).toEqual({
      command: "starcoder-ls",
      args: ["--log-file", "x"],
    });
    expect(serverLaunch(cfg({ "server.command": "ignored", "server.pythonPath": "/v/bin/python", "server.args": ["-v"] }))).toEqual({
      command: "/v/bin/python",
      args: ["-m", "starcoder_ls", "-v"],
    });
  });

  it("classifies configuration changes", () => {
    const keys = ["model", "cache.enabled"];
    const affects = (changed: string[]) => (s: string) => changed.some((c) => c === s || c.startsWith(s + "."));
    expect(classifyChange(affects(["editor.fontSize"]), keys)).toBe("none");
    expect(classifyChange(affects(["starcoder.server.command"]), keys)).toBe("restart");
    expect(classifyChange(affects(["starcoder.enable"]), keys)).toBe("enable");
    expect(classifyChange(affects(["starcoder.cache.enabled"]), keys)).toBe("settings");
    expect(classifyChange(affects(["starcoder.enable", "starcoder.model"]), keys)).toBe("settings");
  });
});
