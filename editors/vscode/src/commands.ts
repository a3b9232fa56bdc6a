/** The extension's own commands (IDs under `starcoder-ls.`; the server's `starcoder.*` commands are
 * registered by vscode-languageclient itself, so ours must not reuse those names). */

import type { Host, ServerApi } from "./host";

export const COMMANDS = {
  toggle: "starcoder-ls.toggle",
  trigger: "starcoder-ls.trigger",
  showLastPrompt: "starcoder-ls.showLastPrompt",
  showStats: "starcoder-ls.showStats",
  restartServer: "starcoder-ls.restartServer",
} as const;

/** Commands the server executes through `workspace/executeCommand`. */
export const SERVER_COMMANDS = {
  accept: "starcoder.accept",
  reject: "starcoder.reject",
  stats: "starcoder.stats",
  status: "starcoder.status",
  lastPrompt: "starcoder.lastPrompt",
} as const;

const NOT_RUNNING = "starcoder-ls: the language server is not running (run \"StarCoder: Restart Language Server\").";

/** Flips `starcoder.enable`; returns the new value. */
export async function toggle(host: Host): Promise<boolean> {
  const enabled = host.getConfig<boolean>("enable") !== false;
  await host.updateConfig("enable", !enabled);
  return !enabled;
}

export async function trigger(host: Host): Promise<void> {
  await host.executeCommand("editor.action.inlineSuggest.trigger");
}

export interface PromptSegment {
  kind?: string;
  path?: string | null;
  start_line?: number | null;
  end_line?: number | null;
  tokens?: number;
  score?: number | null;
}

export interface LastPrompt {
  text: string;
  family?: string;
  mode?: string;
  tokens?: number;
  segments?: PromptSegment[];
}

export async function showLastPrompt(host: Host, server: ServerApi): Promise<void> {
  const uri = host.activeDocumentUri();
  if (!uri) {
    await host.showInfo("starcoder-ls: open a file first; the last prompt is kept per document.");
    return;
  }
  if (!server.isRunning()) {
    await host.showWarning(NOT_RUNNING);
    return;
  }
  const prompt = await server.executeCommand<LastPrompt | null>(SERVER_COMMANDS.lastPrompt, [uri]);
  if (!prompt || typeof prompt.text !== "string") {
    await host.showInfo("starcoder-ls: no prompt for this file yet; request a completion first.");
    return;
  }
  await host.showReadOnlyDocument(`last-prompt-${basename(uri)}.md`, formatLastPrompt(prompt, uri));
}

export async function showStats(host: Host, server: ServerApi): Promise<void> {
  if (!server.isRunning()) {
    await host.showWarning(NOT_RUNNING);
    return;
  }
  const stats = await server.executeCommand<Record<string, unknown> | null>(SERVER_COMMANDS.stats, []);
  await host.showReadOnlyDocument("statistics.md", formatStats(stats ?? {}));
}

function basename(uri: string): string {
  const tail = uri.split(/[\\/]/).pop() ?? "document";
  return decodeURIComponent(tail).replace(/[^\w.-]+/g, "_") || "document";
}

function cell(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
  return String(value).replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

/** A fence longer than any run of backticks in `text`. */
function fence(text: string): string {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((m) => m.length));
  return "`".repeat(Math.max(3, longest + 1));
}

export function formatLastPrompt(prompt: LastPrompt, uri: string): string {
  const lines = [
    `# Last prompt for ${uri}`,
    "",
    `family: **${prompt.family ?? "?"}** · mode: **${prompt.mode ?? "?"}** · tokens: **${prompt.tokens ?? "?"}**`,
    "",
    "## Segments",
    "",
    "| # | kind | path | lines | tokens | score |",
    "|---|------|------|-------|--------|-------|",
  ];
  (prompt.segments ?? []).forEach((s, i) => {
    const span = s.start_line != null ? `${s.start_line}-${s.end_line ?? s.start_line}` : "";
    lines.push(`| ${i + 1} | ${cell(s.kind)} | ${cell(s.path)} | ${span} | ${cell(s.tokens)} | ${cell(s.score)} |`);
  });
  if (!prompt.segments?.length) lines.push("| | (none) | | | | |");
  const f = fence(prompt.text);
  lines.push("", "## Prompt text", "", f, prompt.text, f, "");
  return lines.join("\n");
}

type Counts = Record<string, unknown>;

export function formatStats(stats: Record<string, unknown>): string {
  const rows: Array<[string, Counts]> = [];
  const total = stats.total;
  if (total && typeof total === "object") rows.push(["total", total as Counts]);
  const langs = stats.languages;
  if (langs && typeof langs === "object") {
    for (const [lang, counts] of Object.entries(langs as Record<string, unknown>)) {
      if (counts && typeof counts === "object") rows.push([lang, counts as Counts]);
    }
  }
  // Other top-level objects of counts (future server versions) get rows too.
  for (const [key, value] of Object.entries(stats)) {
    if (key !== "total" && key !== "languages" && value && typeof value === "object" && !Array.isArray(value)) {
      rows.push([key, value as Counts]);
    }
  }
  const preferred = ["shown", "accepted", "rejected", "acceptance_rate"];
  const seen = new Set<string>();
  for (const [, counts] of rows) for (const k of Object.keys(counts)) seen.add(k);
  const columns = [...preferred.filter((k) => seen.has(k)), ...[...seen].filter((k) => !preferred.includes(k)).sort()];
  const lines = ["# starcoder-ls acceptance statistics", "", "Local only: never sent anywhere.", ""];
  if (rows.length === 0 || columns.length === 0) {
    lines.push("No completions shown yet.");
  } else {
    lines.push(`| | ${columns.join(" | ")} |`, `|---|${columns.map(() => "---").join("|")}|`);
    for (const [name, counts] of rows) lines.push(`| ${cell(name)} | ${columns.map((c) => cell(counts[c])).join(" | ")} |`);
  }
  if (typeof stats.file === "string") lines.push("", `Stored in \`${stats.file}\`.`);
  lines.push("");
  return lines.join("\n");
}
