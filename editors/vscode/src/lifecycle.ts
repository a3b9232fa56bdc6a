/**
 * Starting, restarting and giving up on the language server, without the VS Code API: the
 * client itself is behind {@link ClientHandle} so this runs under unit tests with a fake.
 */

import type { Host, ServerApi } from "./host";
import { CrashBudget, Debouncer } from "./restart";
import { INSTALL_HINT, crashMessage, notFoundMessage } from "./resolve";
import type { Launch } from "./settings";
import type { ServerStatus, StatusModel } from "./status";
import { SERVER_COMMANDS } from "./commands";

export interface ClientHandle {
  start(): Promise<void>;
  stop(): Promise<void>;
  isRunning(): boolean;
  executeCommand<T = unknown>(command: string, args: unknown[]): Promise<T>;
}

export interface LifecycleDeps {
  host: Host;
  status: StatusModel;
  readLaunch(): Launch;
  /** The executable `launch.command` resolves to, or undefined when there is none. */
  resolve(launch: Launch): string | undefined;
  /** A new (not started) client for `launch`; it must route crashes to {@link ServerLifecycle.onClosed}. */
  createClient(launch: Launch): ClientHandle;
  now?: () => number;
  /** Minimum time between two restart commands, ms. */
  restartIntervalMs?: number;
  maxCrashes?: number;
  crashWindowMs?: number;
}

export const ACTION_OPEN_SETTINGS = "Open Settings";
export const ACTION_COPY_INSTALL = "Copy Install Command";
export const ACTION_SHOW_OUTPUT = "Show Output";

export class ServerLifecycle implements ServerApi {
  private client: ClientHandle | undefined;
  private launch: Launch | undefined;
  private running = false;
  /** Set once the failure of the current start attempt has been reported. */
  private reported = false;
  private readonly budget: CrashBudget;
  private readonly restartGate: Debouncer;
  private statusTimer: ReturnType<typeof setTimeout> | undefined;
  private lastStatusPoll = Number.NEGATIVE_INFINITY;

  constructor(private readonly deps: LifecycleDeps) {
    const now = deps.now ?? Date.now;
    this.budget = new CrashBudget(deps.maxCrashes ?? 3, deps.crashWindowMs ?? 60_000, now);
    this.restartGate = new Debouncer(deps.restartIntervalMs ?? 5_000, now);
  }

  isRunning(): boolean {
    return this.running && this.client !== undefined && this.client.isRunning();
  }

  async executeCommand<T = unknown>(command: string, args: unknown[]): Promise<T> {
    if (!this.client || !this.isRunning()) throw new Error("starcoder-ls: the language server is not running");
    return this.client.executeCommand<T>(command, args);
  }

  /** Starts the server; never throws (a failure is reported once and leaves the editor usable). */
  async start(): Promise<boolean> {
    const { host, status } = this.deps;
    const launch = this.deps.readLaunch();
    this.launch = launch;
    this.reported = false;
    this.running = false;
    status.serverStarting();
    const exe = this.deps.resolve(launch);
    if (!exe) {
      status.serverFailed(`"${launch.command}" not found`);
      await this.reportNotFound(launch);
      return false;
    }
    host.log(`starting ${[exe, ...launch.args].join(" ")}`);
    const client = this.deps.createClient(launch);
    this.client = client;
    try {
      await client.start();
    } catch (err) {
      if (this.client !== client) return false; // superseded by a restart
      const detail = err instanceof Error ? err.message : String(err);
      host.log(`start failed: ${detail}`);
      status.serverFailed(`the server failed to start: ${detail}`);
      this.budget.record();
      await this.reportCrash(this.budget.count() || 1, detail);
      return false;
    }
    if (this.client !== client) return false;
    this.running = true;
    status.serverRunning();
    await this.refreshStatus(true);
    return true;
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.running = false;
    if (this.statusTimer) clearTimeout(this.statusTimer);
    this.statusTimer = undefined;
    if (client) {
      try {
        await client.stop();
      } catch (err) {
        this.deps.host.log(`stop failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    this.deps.status.serverStopped();
  }

  /**
   * The restart command (and a change of `starcoder.server.*`): at most once per
   * `restartIntervalMs`. Returns false when dropped by the debounce.
   */
  async restart(options: { force?: boolean } = {}): Promise<boolean> {
    if (!options.force && !this.restartGate.tryAcquire()) {
      const s = Math.ceil(this.restartGate.remainingMs() / 1000);
      void this.deps.host.showInfo(`starcoder-ls: a restart just happened; try again in ${s} s.`);
      return false;
    }
    if (options.force) this.restartGate.tryAcquire();
    this.budget.reset();
    await this.stop();
    return this.start();
  }

  /**
   * The connection closed (the client's `errorHandler.closed`). True: restart it; false: give up
   * (the one message has then been shown). A crash before the server ever ran is never retried.
   */
  onClosed(): boolean {
    const wasRunning = this.running;
    this.running = false;
    const again = this.budget.record();
    if (wasRunning && again) {
      this.deps.host.log(`server stopped unexpectedly; restarting (${this.budget.count()} crash(es) within a minute)`);
      this.deps.status.serverStarting();
      return true;
    }
    const detail = wasRunning ? undefined : "while starting";
    this.deps.status.serverFailed(`the server stopped ${this.budget.count()} time(s) within a minute`);
    if (this.launch) void this.reportCrash(this.budget.count(), detail);
    return false;
  }

  /** After an automatic restart by the client succeeded. */
  onRestarted(): void {
    this.running = true;
    this.deps.status.serverRunning();
    void this.refreshStatus(true);
  }

  /** `starcoder.status` into the status bar; throttled unless `force`. */
  async refreshStatus(force = false): Promise<void> {
    const now = (this.deps.now ?? Date.now)();
    if (!force && now - this.lastStatusPoll < 5_000) return;
    this.lastStatusPoll = now;
    if (!this.isRunning()) return;
    try {
      const s = await this.executeCommand<ServerStatus>(SERVER_COMMANDS.status, []);
      this.deps.status.setServerStatus(s ?? undefined);
    } catch (err) {
      this.deps.host.log(`starcoder.status failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Polls the status a few times after a start: the model loads in the background. */
  scheduleStatusPolls(delaysMs: readonly number[] = [2_000, 10_000, 30_000]): void {
    const [first, ...rest] = delaysMs;
    if (first === undefined) return;
    this.statusTimer = setTimeout(() => {
      void this.refreshStatus(true).then(() => this.scheduleStatusPolls(rest));
    }, first);
  }

  private async reportNotFound(launch: Launch): Promise<void> {
    if (this.reported) return;
    this.reported = true;
    const choice = await this.deps.host.showError(notFoundMessage(launch), ACTION_COPY_INSTALL, ACTION_OPEN_SETTINGS);
    await this.handleChoice(choice);
  }

  private async reportCrash(crashes: number, detail?: string): Promise<void> {
    if (this.reported || !this.launch) return;
    this.reported = true;
    const choice = await this.deps.host.showError(
      crashMessage(this.launch, crashes, detail),
      ACTION_SHOW_OUTPUT,
      ACTION_OPEN_SETTINGS,
    );
    await this.handleChoice(choice);
  }

  private async handleChoice(choice: string | undefined): Promise<void> {
    const { host } = this.deps;
    if (choice === ACTION_COPY_INSTALL) {
      await host.copyToClipboard(INSTALL_HINT);
    } else if (choice === ACTION_OPEN_SETTINGS) {
      await host.openSettings("starcoder.server");
    } else if (choice === ACTION_SHOW_OUTPUT) {
      host.showOutput();
    }
  }
}
