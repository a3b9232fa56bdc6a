import { expect } from "./expect";

import { COMMANDS, SERVER_COMMANDS, formatLastPrompt, formatStats, showLastPrompt, showStats, toggle, trigger } from "../src/commands";
import type { ServerApi } from "../src/host";
import { FakeHost } from "./fakes";

function fakeServer(answers: Record<string, unknown>, running = true) {
  const calls: Array<{ command: string; args: unknown[] }> = [];
  const server: ServerApi = {
    isRunning: () => running,
    executeCommand: async <T>(command: string, args: unknown[]) => {
      calls.push({ command, args });
      return answers[command] as T;
    },
  };
  return { server, calls };
}

describe("commands", () => {
  it("never reuses the server's command names", () => {
    for (const id of Object.values(COMMANDS)) {
      expect(id.startsWith("starcoder-ls.")).toBe(true);
      expect(Object.values(SERVER_COMMANDS)).not.toContain(id);
    }
  });

  it("toggle flips starcoder.enable (unset counts as on)", async () => {
    const host = new FakeHost();
    expect(await toggle(host)).toBe(false);
    expect(host.config.enable).toBe(false);
    expect(await toggle(host)).toBe(true);
    expect(host.config.enable).toBe(true);
  });

  it("trigger runs the built-in inline suggest command", async () => {
    const host = new FakeHost();
    await trigger(host);
    expect(host.commands).toEqual([{ command: "editor.action.inlineSuggest.trigger", args: [] }]);
  });

  it("showLastPrompt asks the server with the active URI and opens a document", async () => {
    const host = new FakeHost();
    const { server, calls } = fakeServer({
      [SERVER_COMMANDS.lastPrompt]: {
        text: "<fim_prefix>def f():\n    ```x```<fim_suffix><fim_middle>",
        family: "starcoder",
        mode: "psm",
        tokens: 12,
        segments: [
          { kind: "crossfile", path: "b|c.py", start_line: 3, end_line: 9, tokens: 5, score: 0.42 },
          { kind: "prefix", path: null, start_line: null, end_line: null, tokens: 7, score: null },
        ],
      },
    });
    await showLastPrompt(host, server);
    expect(calls).toEqual([{ command: "starcoder.lastPrompt", args: ["file:///w/a.py"] }]);
    expect(host.documents).toHaveLength(1);
    const { name, content } = host.documents[0];
    expect(name).toBe("last-prompt-a.py.md");
    expect(content).toContain("| 1 | crossfile | b\\|c.py | 3-9 | 5 | 0.420 |");
    expect(content).toContain("| 2 | prefix |  |  | 7 |  |");
    expect(content).toContain("````\n<fim_prefix>def f():"); // fence longer than the text's backticks
  });

  it("showLastPrompt says so when there is no prompt yet or no editor", async () => {
    const host = new FakeHost();
    await showLastPrompt(host, fakeServer({ [SERVER_COMMANDS.lastPrompt]: null }).server);
    expect(host.messages[0].text).toContain("no prompt");
    host.activeUri = undefined;
    const { server, calls } = fakeServer({});
    await showLastPrompt(host, server);
    expect(calls).toHaveLength(0);
    expect(host.documents).toHaveLength(0);
  });

  it("commands warn instead of throwing when the server is down", async () => {
    const host = new FakeHost();
    const { server, calls } = fakeServer({}, false);
    await showStats(host, server);
    await showLastPrompt(host, server);
    expect(calls).toHaveLength(0);
    expect(host.messages.map((m) => m.level)).toEqual(["warning", "warning"]);
  });

  it("showStats renders total and per-language rows", async () => {
    const host = new FakeHost();
    const stats = {
      total: { shown: 4, accepted: 1, rejected: 2, acceptance_rate: 0.25 },
      languages: { python: { shown: 4, accepted: 1, rejected: 2, acceptance_rate: 0.25 } },
      file: "/home/u/.local/state/starcoder-ls/stats.json",
    };
    await showStats(host, fakeServer({ [SERVER_COMMANDS.stats]: stats }).server);
    const md = host.documents[0].content;
    expect(md).toContain("| | shown | accepted | rejected | acceptance_rate |");
    expect(md).toContain("| total | 4 | 1 | 2 | 0.250 |");
    expect(md).toContain("| python | 4 | 1 | 2 | 0.250 |");
    expect(md).toContain("stats.json");
  });

  it("formats empty statistics and prompts without segments", () => {
    expect(formatStats({})).toContain("No completions shown yet.");
    expect(formatLastPrompt({ text: "x" }, "file:///a")).toContain("(none)");
  });
});
