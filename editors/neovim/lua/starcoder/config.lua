---@mod starcoder.config Defaults and validation of the starcoder.nvim options.
local M = {}

--- Server settings (sent as `init_options` and answered on `workspace/configuration` for the
--- `starcoder` section). They mirror `starcoder_ls.settings.schema()`; a test keeps them equal.
local function server_defaults()
  return {
    backend = "llamacpp",
    model = "",
    family = "auto",
    fimMode = "auto",
    url = "",
    apiKeyEnv = "",
    maxTokens = 64,
    temperature = 0.0,
    topP = 1.0,
    contextTokens = 1536,
    prefixRatio = 0.75,
    crossFile = true,
    crossFileTokens = 512,
    workspace = {
      index = true,
      include = {},
      exclude = {},
      maxFiles = 10000,
      maxFileKb = 512,
      persist = true,
    },
    debounceMs = 150,
    timeoutMs = 10000,
    retries = 1,
    languages = vim.empty_dict(),
    completionFallback = "auto",
    cache = {
      enabled = true,
      memoryEntries = 512,
      disk = false,
      diskPath = "",
      diskSizeMb = 64,
    },
    device = "auto",
    dtype = "auto",
    kernels = "auto",
    quantize = "none",
    nThreads = 0,
    nCtx = 0,
    tlsVerify = true,
    caBundle = "",
    tokenHealing = "auto",
    syntaxCheck = false,
    stats = true,
    redactSecrets = "remote",
    completeSecretFiles = false,
  }
end

M.defaults = {
  --- Turn completion on (`:StarCoder toggle` flips it at run time).
  enabled = true,
  --- The server command (a list: program and arguments).
  cmd = { "starcoder-ls" },
  --- Filetypes to attach to; `{ "*" }` means every buffer with a filetype.
  filetypes = {
    "python", "javascript", "javascriptreact", "typescript", "typescriptreact", "go", "rust",
    "java", "c", "cpp", "cs", "ruby", "php", "sh", "bash", "lua", "kotlin", "swift", "scala",
    "html", "css", "sql", "yaml", "toml", "json", "markdown", "zig", "haskell", "ocaml",
    "elixir", "erlang", "r", "julia", "dart", "perl", "vim",
  },
  --- Files or folders that mark the project root; falls back to the file's own folder.
  root_markers = { ".git", "pyproject.toml", "package.json", "go.mod", "Cargo.toml", ".hg" },
  --- Client-side wait after the last keystroke before asking (ms). The server debounces too
  --- (`settings.debounceMs`), adaptively.
  debounce_ms = 30,
  --- Ask automatically while typing in insert mode (else only on `trigger()`).
  auto_trigger = true,
  --- Highlight group of the ghost text.
  hl_group = "StarCoderSuggestion",
  --- Insert-mode keys; set one to `false` to leave it unmapped.
  keymaps = {
    accept = "<Tab>",
    accept_word = "<M-Right>",
    accept_line = "<M-Down>",
    dismiss = "<C-]>",
    next = "<M-]>",
    prev = "<M-[>",
    trigger = "<M-\\>",
  },
  --- Server settings (camelCase, the `starcoder` section).
  settings = server_defaults(),
}

local function is_list_of_strings(v)
  if type(v) ~= "table" then
    return false
  end
  for k, s in pairs(v) do
    if type(k) ~= "number" or type(s) ~= "string" then
      return false
    end
  end
  return true
end

local function check_keys(tbl, known, where, errors)
  for k in pairs(tbl) do
    if known[k] == nil then
      table.insert(errors, ("unknown option %s%s"):format(where, tostring(k)))
    end
  end
end

--- Merge `opts` over the defaults and validate. Returns the config, or nil and a message that
--- lists every problem.
---@param opts table|nil
---@return table|nil, string|nil
function M.resolve(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    return nil, "starcoder: setup() expects a table, got " .. type(opts)
  end
  local errors = {}
  check_keys(opts, M.defaults, "", errors)
  if opts.keymaps ~= nil and type(opts.keymaps) == "table" then
    check_keys(opts.keymaps, M.defaults.keymaps, "keymaps.", errors)
  end
  if opts.settings ~= nil and type(opts.settings) == "table" then
    check_keys(opts.settings, M.defaults.settings, "settings.", errors)
  end
  local cfg = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts)
  -- Lists replace, not merge.
  for _, key in ipairs({ "cmd", "filetypes", "root_markers" }) do
    if opts[key] ~= nil then
      cfg[key] = opts[key]
    end
  end

  local function check(name, value, ok, expected)
    if not ok then
      table.insert(errors, ("%s: expected %s, got %s"):format(name, expected, vim.inspect(value)))
    end
  end
  check("enabled", cfg.enabled, type(cfg.enabled) == "boolean", "a boolean")
  check("auto_trigger", cfg.auto_trigger, type(cfg.auto_trigger) == "boolean", "a boolean")
  check("cmd", cfg.cmd, is_list_of_strings(cfg.cmd) and #cfg.cmd > 0,
    "a non-empty list of strings")
  check("filetypes", cfg.filetypes, is_list_of_strings(cfg.filetypes), "a list of strings")
  check("root_markers", cfg.root_markers, is_list_of_strings(cfg.root_markers),
    "a list of strings")
  check("debounce_ms", cfg.debounce_ms,
    type(cfg.debounce_ms) == "number" and cfg.debounce_ms >= 0 and cfg.debounce_ms <= 5000,
    "a number from 0 to 5000")
  check("hl_group", cfg.hl_group, type(cfg.hl_group) == "string", "a string")
  check("keymaps", cfg.keymaps, type(cfg.keymaps) == "table", "a table")
  if type(cfg.keymaps) == "table" then
    for name, lhs in pairs(cfg.keymaps) do
      check("keymaps." .. name, lhs, lhs == false or (type(lhs) == "string" and lhs ~= ""),
        "a key (string) or false")
    end
  end
  check("settings", cfg.settings, type(cfg.settings) == "table", "a table")
  if type(cfg.settings) == "table" then
    for key, default in pairs(M.defaults.settings) do
      local v = cfg.settings[key]
      if v ~= nil and type(v) ~= type(default) then
        check("settings." .. key, v, false, "a " .. type(default))
      end
    end
  end
  if #errors > 0 then
    table.sort(errors)
    return nil, "starcoder: invalid options: " .. table.concat(errors, "; ")
  end
  return cfg, nil
end

return M
