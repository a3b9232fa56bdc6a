/**
 * The `starcoder` configuration section as VS Code stores it (flattened keys such as
 * `cache.enabled`, see package.json) and as the server wants it (nested objects, camelCase, no
 * client-only keys).
 */

export const SECTION = "starcoder";

/** Keys (without the `starcoder.` prefix) that only the extension reads. */
export const CLIENT_ONLY_KEYS: readonly string[] = ["enable"];
export const CLIENT_ONLY_PREFIXES: readonly string[] = ["server."];

export function isClientOnly(key: string): boolean {
  return CLIENT_ONLY_KEYS.includes(key) || CLIENT_ONLY_PREFIXES.some((p) => key.startsWith(p));
}

/**
 * The server's setting keys from package.json's `contributes.configuration.properties`
 * (`starcoder.cache.enabled` -> `cache.enabled`), client-only keys left out.
 */
export function serverKeys(properties: Record<string, unknown>): string[] {
  const prefix = SECTION + ".";
  return Object.keys(properties)
    .filter((k) => k.startsWith(prefix))
    .map((k) => k.slice(prefix.length))
    .filter((k) => !isClientOnly(k));
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** `{"cache.enabled": true, "model": ""}` -> `{"cache": {"enabled": true}, "model": ""}`. */
export function unflatten(flat: Record<string, unknown>): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(flat)) {
    if (value === undefined) continue;
    const parts = key.split(".");
    let node: JsonObject = out;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (next === null || typeof next !== "object" || Array.isArray(next)) {
        node[part] = {};
      }
      node = node[part] as JsonObject;
    }
    node[parts[parts.length - 1]] = clone(value);
  }
  return out;
}

/**
 * The inverse of {@link unflatten} for the given leaf keys: `leaves` names the settings whose
 * values are objects themselves (`languages`) and must not be split further.
 */
export function flatten(nested: Record<string, unknown>, leaves: ReadonlySet<string> = new Set(), prefix = ""): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const [key, value] of Object.entries(nested)) {
    const full = prefix + key;
    if (value !== null && typeof value === "object" && !Array.isArray(value) && !leaves.has(full)) {
      Object.assign(out, flatten(value as Record<string, unknown>, leaves, full + "."));
    } else {
      out[full] = clone(value);
    }
  }
  return out;
}

/** The settings object sent to the server: every server key read with `get`, nested. */
export function buildServerSettings(keys: readonly string[], get: (key: string) => unknown): JsonObject {
  const flat: Record<string, unknown> = {};
  for (const key of keys) {
    if (isClientOnly(key)) continue;
    const value = get(key);
    if (value !== undefined) flat[key] = value;
  }
  return unflatten(flat);
}

export interface Launch {
  command: string;
  args: string[];
}

/** How to start the server: `pythonPath -m starcoder_ls` when set, else the configured command. */
export function serverLaunch(get: (key: string) => unknown): Launch {
  const extra = get("server.args");
  const args = Array.isArray(extra) ? extra.filter((a): a is string => typeof a === "string") : [];
  const python = get("server.pythonPath");
  if (typeof python === "string" && python.trim() !== "") {
    return { command: python.trim(), args: ["-m", "starcoder_ls", ...args] };
  }
  const command = get("server.command");
  return {
    command: typeof command === "string" && command.trim() !== "" ? command.trim() : "starcoder-ls",
    args,
  };
}

/**
 * Which part of the extension a configuration change concerns: `restart` (how the server is
 * started changed), `settings` (push new settings to the server), `enable` (only the client-side
 * switch) or `none`. `affects` is `ConfigurationChangeEvent.affectsConfiguration`, which is
 * hierarchical, so each server key is probed on its own.
 */
export function classifyChange(
  affects: (section: string) => boolean,
  keys: readonly string[],
): "restart" | "settings" | "enable" | "none" {
  if (affects(`${SECTION}.server`)) return "restart";
  if (!affects(SECTION)) return "none";
  if (keys.some((k) => affects(`${SECTION}.${k}`))) return "settings";
  if (affects(`${SECTION}.enable`)) return "enable";
  return "settings";
}

/** A JSON copy (settings objects from VS Code are frozen proxies). */
function clone(value: unknown): Json {
  return value === null || typeof value !== "object" ? (value as Json) : (JSON.parse(JSON.stringify(value)) as Json);
}
