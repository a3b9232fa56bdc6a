import type { Host, StatusView } from "../src/host";

export class FakeHost implements Host {
  config: Record<string, unknown> = {};
  messages: Array<{ level: string; text: string; actions: string[] }> = [];
  commands: Array<{ command: string; args: unknown[] }> = [];
  documents: Array<{ name: string; content: string }> = [];
  views: StatusView[] = [];
  logs: string[] = [];
  clipboard = "";
  settingsOpened: string[] = [];
  activeUri: string | undefined = "file:///w/a.py";
  answer: string | undefined;

  getConfig<T>(key: string): T | undefined {
    return this.config[key] as T | undefined;
  }
  async updateConfig(key: string, value: unknown): Promise<void> {
    this.config[key] = value;
  }
  private say(level: string, text: string, actions: string[]): Promise<string | undefined> {
    this.messages.push({ level, text, actions });
    return Promise.resolve(this.answer);
  }
  showInfo(text: string, ...actions: string[]) {
    return this.say("info", text, actions);
  }
  showWarning(text: string, ...actions: string[]) {
    return this.say("warning", text, actions);
  }
  showError(text: string, ...actions: string[]) {
    return this.say("error", text, actions);
  }
  async executeCommand<T>(command: string, ...args: unknown[]): Promise<T> {
    this.commands.push({ command, args });
    return undefined as T;
  }
  activeDocumentUri() {
    return this.activeUri;
  }
  async showReadOnlyDocument(name: string, content: string) {
    this.documents.push({ name, content });
  }
  setStatus(view: StatusView) {
    this.views.push(view);
  }
  async copyToClipboard(text: string) {
    this.clipboard = text;
  }
  async openSettings(query: string) {
    this.settingsOpened.push(query);
  }
  log(message: string) {
    this.logs.push(message);
  }
  showOutput() {
    this.logs.push("<output shown>");
  }
}
