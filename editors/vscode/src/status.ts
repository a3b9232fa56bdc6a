/** The status bar state machine: starting / idle / generating / disabled / error / stopped. */

import type { StatusView } from "./host";

export type Phase = "starting" | "idle" | "generating" | "disabled" | "error" | "stopped";

/** The answer of the server's `starcoder.status` command (the fields the client reads). */
export interface ServerStatus {
  version?: string;
  backend?: string;
  model?: string;
  backend_ok?: boolean;
  position_encoding?: string;
  inline_completion_client?: boolean;
}

export const COMMAND_TOGGLE = "starcoder-ls.toggle";
export const COMMAND_RESTART = "starcoder-ls.restartServer";

export class StatusModel {
  private server: "starting" | "running" | "failed" | "stopped" = "stopped";
  private inflight = 0;
  private enabled = true;
  private error: string | undefined;
  private status: ServerStatus | undefined;
  private readonly listeners: Array<(view: StatusView) => void> = [];

  onChange(listener: (view: StatusView) => void): void {
    this.listeners.push(listener);
  }

  phase(): Phase {
    if (this.server === "failed") return "error";
    if (this.server === "stopped") return "stopped";
    if (this.server === "starting") return "starting";
    if (this.status && this.status.backend_ok === false) return "error";
    if (!this.enabled) return "disabled";
    return this.inflight > 0 ? "generating" : "idle";
  }

  serverStarting(): void {
    this.server = "starting";
    this.error = undefined;
    this.status = undefined;
    this.inflight = 0;
    this.emit();
  }

  serverRunning(): void {
    this.server = "running";
    this.error = undefined;
    this.emit();
  }

  serverFailed(message: string): void {
    this.server = "failed";
    this.error = message;
    this.inflight = 0;
    this.emit();
  }

  serverStopped(): void {
    if (this.server === "failed") return; // keep the error visible
    this.server = "stopped";
    this.inflight = 0;
    this.emit();
  }

  setEnabled(enabled: boolean): void {
    this.enabled = enabled;
    this.emit();
  }

  setServerStatus(status: ServerStatus | undefined): void {
    this.status = status;
    this.emit();
  }

  /** An inline completion request went to the server; call {@link requestFinished} when it ends. */
  requestStarted(): void {
    this.inflight += 1;
    if (this.inflight === 1) this.emit();
  }

  requestFinished(): void {
    if (this.inflight === 0) return;
    this.inflight -= 1;
    if (this.inflight === 0) this.emit();
  }

  inflightCount(): number {
    return this.inflight;
  }

  view(): StatusView {
    const phase = this.phase();
    const model = this.status?.model?.split(/[\\/]/).pop();
    const label = model ? `StarCoder: ${model}` : "StarCoder";
    const details = this.details();
    switch (phase) {
      case "starting":
        return { text: "$(loading~spin) StarCoder", tooltip: "starcoder-ls: starting the server", kind: "normal", command: COMMAND_TOGGLE };
      case "generating":
        return { text: `$(loading~spin) ${label}`, tooltip: `starcoder-ls: generating\n${details}`, kind: "normal", command: COMMAND_TOGGLE };
      case "disabled":
        return { text: `$(circle-slash) ${label}`, tooltip: `starcoder-ls: inline completions off (click to turn on)\n${details}`, kind: "warning", command: COMMAND_TOGGLE };
      case "error": {
        const why = this.error ?? (this.status?.backend_ok === false ? `the ${this.status.backend ?? ""} backend failed to load (see the output channel)` : "error");
        return { text: `$(error) ${label}`, tooltip: `starcoder-ls: ${why}\nClick to restart the server.`, kind: "error", command: COMMAND_RESTART };
      }
      case "stopped":
        return { text: "$(debug-stop) StarCoder", tooltip: "starcoder-ls: server stopped (click to restart)", kind: "warning", command: COMMAND_RESTART };
      default:
        return { text: `$(sparkle) ${label}`, tooltip: `starcoder-ls: ready (click to turn inline completions off)\n${details}`, kind: "normal", command: COMMAND_TOGGLE };
    }
  }

  private details(): string {
    const s = this.status;
    if (!s) return "";
    const parts = [
      s.backend ? `backend: ${s.backend}` : "",
      s.model ? `model: ${s.model}` : "",
      s.version ? `server: ${s.version}` : "",
    ];
    return parts.filter(Boolean).join("\n");
  }

  private emit(): void {
    const view = this.view();
    for (const listener of this.listeners) listener(view);
  }
}
