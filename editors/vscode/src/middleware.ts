/** vscode-languageclient middleware, written against structural types so it tests without VS Code. */

import { SECTION } from "./settings";
import type { StatusModel } from "./status";

type Thenable<T> = PromiseLike<T>;
type ProviderResult<T> = T | undefined | null | Thenable<T | undefined | null>;

/**
 * `provideInlineCompletionItems` middleware: no request while `starcoder.enable` is off, and the
 * status bar shows "generating" while a request is in flight.
 */
export function inlineCompletionMiddleware(deps: { isEnabled(): boolean; status: StatusModel; onSettled?(): void }) {
  return function provideInlineCompletionItems<D, P, C, K, R>(
    document: D,
    position: P,
    context: C,
    token: K,
    next: (document: D, position: P, context: C, token: K) => ProviderResult<R>,
  ): ProviderResult<R> {
    if (!deps.isEnabled()) return null;
    deps.status.requestStarted();
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      deps.status.requestFinished();
      deps.onSettled?.();
    };
    try {
      const result = next(document, position, context, token);
      if (result && typeof (result as Thenable<unknown>).then === "function") {
        return (result as Thenable<R | undefined | null>).then(
          (value) => {
            done();
            return value;
          },
          (err: unknown) => {
            done();
            throw err;
          },
        );
      }
      done();
      return result;
    } catch (err) {
      done();
      throw err;
    }
  };
}

export interface ConfigurationItem {
  section?: string;
  scopeUri?: string;
}

/**
 * `workspace/configuration` answers: the `starcoder` section is replaced by the server's view of
 * it (nested, client-only keys removed); other sections keep the default answer.
 */
export function rewriteConfiguration(items: readonly ConfigurationItem[], answers: readonly unknown[], serverSettings: () => unknown): unknown[] {
  return items.map((item, i) => (item.section === SECTION ? serverSettings() : answers[i] ?? null));
}
