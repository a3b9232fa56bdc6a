/**
 * Entry point: wires vscode-languageclient to the starcoder-ls server.
 *
 * Inline completion is vscode-languageclient's own `textDocument/inlineCompletion` feature
 * (InlineCompletionItemFeature, a "proposed" 3.18 feature in vscode-languageclient 9, registered
 * explicitly below); the middleware only gates it on `starcoder.enable` and drives the status bar.
 */

import * as fs from "node:fs";
import * as os from "node:os";

import * as vscode from "vscode";
import {
  CloseAction,
  DidChangeConfigurationNotification,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  RevealOutputChannelOn,
  State,
  type LanguageClientOptions,
  type ServerOptions,
} from "vscode-languageclient/node";
import { InlineCompletionItemFeature } from "vscode-languageclient/lib/common/inlineCompletion";

import { COMMANDS, showLastPrompt, showStats, toggle, trigger } from "./commands";
import { ServerLifecycle, type ClientHandle } from "./lifecycle";
import { inlineCompletionMiddleware, rewriteConfiguration } from "./middleware";
import { findExecutable } from "./resolve";
import { SECTION, buildServerSettings, classifyChange, serverKeys, serverLaunch, type Launch } from "./settings";
import { StatusModel } from "./status";
import { VscodeHost } from "./vscodeHost";

let lifecycle: ServerLifecycle | undefined;

function isExecutable(file: string): boolean {
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) return false;
    if (process.platform !== "win32") fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel("StarCoder", { log: true });
  const host = new VscodeHost(output);
  const status = new StatusModel();
  status.onChange((view) => host.setStatus(view));
  context.subscriptions.push(output, host);

  const properties = (context.extension.packageJSON?.contributes?.configuration?.properties ?? {}) as Record<string, unknown>;
  const keys = serverKeys(properties);
  const settings = () => {
    const config = vscode.workspace.getConfiguration(SECTION);
    return buildServerSettings(keys, (key) => config.get(key));
  };
  const isEnabled = () => host.getConfig<boolean>("enable") !== false;
  status.setEnabled(isEnabled());

  let current: LanguageClient | undefined;

  const createClient = (launch: Launch): ClientHandle => {
    const serverOptions: ServerOptions = {
      run: { command: launch.command, args: launch.args },
      debug: { command: launch.command, args: launch.args },
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
      initializationOptions: settings(),
      outputChannel: output,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      initializationFailedHandler: () => false,
      errorHandler: {
        error: (_error, _message, count) =>
          (count ?? 0) <= 3 ? { action: ErrorAction.Continue, handled: true } : { action: ErrorAction.Shutdown, handled: true },
        closed: () =>
          lifecycle?.onClosed()
            ? { action: CloseAction.Restart, handled: true }
            : { action: CloseAction.DoNotRestart, handled: true },
      },
      middleware: {
        provideInlineCompletionItems: inlineCompletionMiddleware({
          isEnabled,
          status,
          onSettled: () => void lifecycle?.refreshStatus(),
        }),
        workspace: {
          configuration: async (params, token, next) => {
            const answers = await next(params, token);
            if (!Array.isArray(answers)) return answers;
            return rewriteConfiguration(params.items, answers, settings);
          },
        },
      },
    };
    const client = new LanguageClient("starcoder-ls", "StarCoder", serverOptions, clientOptions);
    // textDocument/inlineCompletion is a proposed (LSP 3.18) feature in vscode-languageclient 9.
    client.registerFeature(new InlineCompletionItemFeature(client));
    client.onDidChangeState((e) => {
      if (e.newState === State.Running && e.oldState !== State.Running && lifecycle && !lifecycle.isRunning() && current === client) {
        lifecycle.onRestarted();
      }
    });
    current = client;
    return {
      start: () => client.start(),
      stop: async () => {
        if (client.state !== State.Stopped) await client.stop(2_000);
        await client.dispose().catch(() => undefined);
      },
      isRunning: () => client.state === State.Running,
      executeCommand: <T>(command: string, args: unknown[]) =>
        client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }) as Promise<T>,
    };
  };

  lifecycle = new ServerLifecycle({
    host,
    status,
    readLaunch: () => serverLaunch((key) => host.getConfig(key)),
    resolve: (launch) => findExecutable(launch.command, process.env, isExecutable, process.platform, os.homedir()),
    createClient,
  });
  const lc = lifecycle;

  context.subscriptions.push(
    vscode.commands.registerCommand(COMMANDS.toggle, async () => {
      const on = await toggle(host);
      status.setEnabled(on);
    }),
    vscode.commands.registerCommand(COMMANDS.trigger, () => trigger(host)),
    vscode.commands.registerCommand(COMMANDS.showLastPrompt, () => showLastPrompt(host, lc)),
    vscode.commands.registerCommand(COMMANDS.showStats, () => showStats(host, lc)),
    vscode.commands.registerCommand(COMMANDS.restartServer, () => lc.restart()),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      const kind = classifyChange((s) => event.affectsConfiguration(s), keys);
      if (kind === "none") return;
      status.setEnabled(isEnabled());
      if (kind === "restart") {
        await lc.restart({ force: true });
      } else if (kind === "settings" && current && lc.isRunning()) {
        await current.sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: settings() } });
        await lc.refreshStatus(true);
      }
    }),
    { dispose: () => void lc.stop() },
  );

  if (await lc.start()) lc.scheduleStatusPolls();
}

export async function deactivate(): Promise<void> {
  const lc = lifecycle;
  lifecycle = undefined;
  if (lc) await lc.stop();
}
