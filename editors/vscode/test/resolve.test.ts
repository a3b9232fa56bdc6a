import { expect } from "./expect";

import { INSTALL_HINT, crashMessage, findExecutable, notFoundMessage } from "../src/resolve";

describe("findExecutable", () => {
  const files = new Set(["/usr/bin/starcoder-ls", "/opt/venv/bin/python", "C:\\Py\\Scripts\\starcoder-ls.exe"]);
  const exists = (f: string) => files.has(f);

  it("searches PATH", () => {
    expect(findExecutable("starcoder-ls", { PATH: "/nope:/usr/bin" }, exists, "linux")).toBe("/usr/bin/starcoder-ls");
    expect(findExecutable("missing", { PATH: "/usr/bin" }, exists, "linux")).toBeUndefined();
    expect(findExecutable("starcoder-ls", {}, exists, "linux")).toBeUndefined();
  });

  it("takes paths as they are (and expands ~)", () => {
    expect(findExecutable("/opt/venv/bin/python", { PATH: "" }, exists, "linux")).toBe("/opt/venv/bin/python");
    expect(findExecutable("/opt/venv/bin/nope", { PATH: "/usr/bin" }, exists, "linux")).toBeUndefined();
    expect(findExecutable("~/bin/python", {}, exists, "linux", "/opt/venv")).toBe("/opt/venv/bin/python");
  });

  it("uses PATHEXT on Windows", () => {
    expect(findExecutable("starcoder-ls", { Path: "C:\\Py\\Scripts", PATHEXT: ".COM;.exe" }, exists, "win32")).toBe("C:\\Py\\Scripts\\starcoder-ls.exe");
  });
});

describe("messages", () => {
  it("name the fix", () => {
    const m = notFoundMessage({ command: "starcoder-ls", args: [] });
    expect(m).toContain(INSTALL_HINT);
    expect(m).toContain("starcoder.server.command");
    expect(notFoundMessage({ command: "/v/python", args: ["-m", "starcoder_ls"] })).toContain("pythonPath");
    expect(crashMessage({ command: "starcoder-ls", args: ["-v"] }, 3)).toContain("`starcoder-ls -v` stopped 3 time(s)");
  });
});
