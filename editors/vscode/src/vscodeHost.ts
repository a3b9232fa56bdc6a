/** {@link Host} on the real VS Code API: the only module besides extension.ts that imports vscode. */

import * as vscode from "vscode";

import type { Host, StatusView } from "./host";
import { SECTION } from "./settings";

export const DOC_SCHEME = "starcoder-ls";

export class VscodeHost implements Host, vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private readonly docs = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  private readonly disposables: vscode.Disposable[] = [];
  private serial = 0;

  constructor(readonly output: vscode.LogOutputChannel) {
    this.item = vscode.window.createStatusBarItem("starcoder-ls.status", vscode.StatusBarAlignment.Right, 100);
    this.item.name = "StarCoder";
    this.item.show();
    const provider: vscode.TextDocumentContentProvider = {
      onDidChange: this.changed.event,
      provideTextDocumentContent: (uri) => this.docs.get(uri.toString()) ?? "",
    };
    this.disposables.push(this.item, this.changed, vscode.workspace.registerTextDocumentContentProvider(DOC_SCHEME, provider));
  }

  getConfig<T>(key: string): T | undefined {
    return vscode.workspace.getConfiguration(SECTION).get<T>(key);
  }

  async updateConfig(key: string, value: unknown): Promise<void> {
    const config = vscode.workspace.getConfiguration(SECTION);
    const info = config.inspect(key);
    const target =
      info?.workspaceFolderValue !== undefined
        ? vscode.ConfigurationTarget.WorkspaceFolder
        : info?.workspaceValue !== undefined
          ? vscode.ConfigurationTarget.Workspace
          : vscode.ConfigurationTarget.Global;
    await config.update(key, value, target);
  }

  showInfo(message: string, ...actions: string[]): Promise<string | undefined> {
    return Promise.resolve(vscode.window.showInformationMessage(message, ...actions));
  }

  showWarning(message: string, ...actions: string[]): Promise<string | undefined> {
    return Promise.resolve(vscode.window.showWarningMessage(message, ...actions));
  }

  showError(message: string, ...actions: string[]): Promise<string | undefined> {
    this.output.error(message);
    return Promise.resolve(vscode.window.showErrorMessage(message, ...actions));
  }

  executeCommand<T = unknown>(command: string, ...args: unknown[]): Promise<T> {
    return Promise.resolve(vscode.commands.executeCommand<T>(command, ...args));
  }

  activeDocumentUri(): string | undefined {
    return vscode.window.activeTextEditor?.document.uri.toString();
  }

  async showReadOnlyDocument(name: string, content: string): Promise<void> {
    this.serial += 1;
    const uri = vscode.Uri.from({ scheme: DOC_SCHEME, path: `/${name}`, query: String(this.serial) });
    this.docs.set(uri.toString(), content);
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.languages.setTextDocumentLanguage(doc, "markdown");
    await vscode.window.showTextDocument(doc, { viewColumn: vscode.ViewColumn.Beside, preview: true });
  }

  setStatus(view: StatusView): void {
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.command = view.command;
    this.item.backgroundColor =
      view.kind === "error"
        ? new vscode.ThemeColor("statusBarItem.errorBackground")
        : view.kind === "warning"
          ? new vscode.ThemeColor("statusBarItem.warningBackground")
          : undefined;
  }

  async copyToClipboard(text: string): Promise<void> {
    await vscode.env.clipboard.writeText(text);
  }

  async openSettings(query: string): Promise<void> {
    await vscode.commands.executeCommand("workbench.action.openSettings", query);
  }

  log(message: string): void {
    this.output.info(message);
  }

  showOutput(): void {
    this.output.show(true);
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
