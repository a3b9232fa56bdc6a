/**
 * The thin seam between the extension's logic and the VS Code API.
 *
 * Everything under src/ except extension.ts and vscodeHost.ts talks to the editor through these
 * interfaces only, so it runs (and is unit-tested) in plain Node without VS Code.
 */

/** What the status bar item shows; `kind` picks its colours. */
export interface StatusView {
  text: string;
  tooltip: string;
  kind: "normal" | "warning" | "error";
  command: string;
}

export interface Host {
  /** A value of the `starcoder` configuration section (key without the `starcoder.` prefix). */
  getConfig<T>(key: string): T | undefined;
  /** Writes a `starcoder` setting where it is currently defined (user settings otherwise). */
  updateConfig(key: string, value: unknown): Promise<void>;
  showInfo(message: string, ...actions: string[]): Promise<string | undefined>;
  showWarning(message: string, ...actions: string[]): Promise<string | undefined>;
  showError(message: string, ...actions: string[]): Promise<string | undefined>;
  executeCommand<T = unknown>(command: string, ...args: unknown[]): Promise<T>;
  /** URI (string form) of the active text editor's document, if any. */
  activeDocumentUri(): string | undefined;
  /** Opens a read-only virtual document (markdown) beside the current editor. */
  showReadOnlyDocument(name: string, content: string): Promise<void>;
  setStatus(view: StatusView): void;
  copyToClipboard(text: string): Promise<void>;
  openSettings(query: string): Promise<void>;
  log(message: string): void;
  /** Reveals the extension's output channel. */
  showOutput(): void;
}

/** The language server as the command logic sees it. */
export interface ServerApi {
  isRunning(): boolean;
  /** `workspace/executeCommand` on the server. */
  executeCommand<T = unknown>(command: string, args: unknown[]): Promise<T>;
}
