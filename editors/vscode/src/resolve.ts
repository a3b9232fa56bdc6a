/** Finding the server executable before spawning it, so a missing one gives one clear message. */

import * as path from "node:path";

import type { Launch } from "./settings";

export interface Env {
  PATH?: string;
  Path?: string;
  PATHEXT?: string;
}

/**
 * The file `command` runs: itself when it names a path (absolute, or relative with a
 * separator, `~` expanded), else the first match on PATH (with PATHEXT on Windows). Undefined
 * when there is none.
 */
export function findExecutable(
  command: string,
  env: Env,
  isExecutable: (file: string) => boolean,
  platform: string = process.platform,
  home = "",
): string | undefined {
  const p = platform === "win32" ? path.win32 : path.posix;
  let cmd = command;
  if (home && (cmd === "~" || cmd.startsWith("~/"))) cmd = home + cmd.slice(1);
  const exts = platform === "win32" ? ["", ...(env.PATHEXT ?? ".COM;.EXE;.BAT;.CMD").split(";").filter(Boolean)] : [""];
  const hasSep = cmd.includes("/") || (platform === "win32" && cmd.includes("\\"));
  if (hasSep || p.isAbsolute(cmd)) {
    return exts.map((e) => cmd + e).find(isExecutable);
  }
  const dirs = (env.PATH ?? env.Path ?? "").split(platform === "win32" ? ";" : ":").filter(Boolean);
  for (const dir of dirs) {
    for (const ext of exts) {
      const file = p.join(dir, cmd + ext);
      if (isExecutable(file)) return file;
    }
  }
  return undefined;
}

export const INSTALL_HINT = "pip install starcoder-ls";

/** The one message shown when the server cannot be found. */
export function notFoundMessage(launch: Launch): string {
  const what = launch.args[0] === "-m" ? `Python interpreter "${launch.command}" (starcoder.server.pythonPath)` : `"${launch.command}"`;
  return (
    `starcoder-ls: the language server ${what} was not found. ` +
    `Install it with \`${INSTALL_HINT}\` (in the Python environment on your PATH), ` +
    `or set starcoder.server.command (or starcoder.server.pythonPath) to its full path.`
  );
}

/** The one message shown when the server keeps crashing (or fails at start). */
export function crashMessage(launch: Launch, crashes: number, detail?: string): string {
  const cmd = [launch.command, ...launch.args].join(" ");
  const why = detail ? ` (${detail})` : "";
  return (
    `starcoder-ls: the language server \`${cmd}\` stopped ${crashes} time(s) within a minute${why}; ` +
    `it will not be restarted automatically. See the "StarCoder" output channel. ` +
    `Check the install (\`${INSTALL_HINT}\`) and starcoder.server.command, then run "StarCoder: Restart Language Server".`
  );
}
