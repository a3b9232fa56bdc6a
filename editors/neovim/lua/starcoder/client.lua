---@mod starcoder.client The starcoder-ls language client: start, requests, commands.
local state = require("starcoder.state")

local M = {}

M.NAME = "starcoder"

local has_011 = vim.fn.has("nvim-0.11") == 1

--- Start failures: { count, last (uv.now ms), notified }. Reset by setup().
M.failures = { count = 0, last = 0, notified = false }
--- Give up after this many failed starts; wait this long (ms, times the count) between tries.
M.MAX_FAILURES = 3
M.RETRY_MS = 10000

local function notify_once(msg)
  if M.failures.notified then
    return
  end
  M.failures.notified = true
  vim.schedule(function()
    vim.notify(msg, vim.log.levels.ERROR, { title = "starcoder" })
  end)
end

local FIX = "Fix: `pip install starcoder-ls` (in an environment on your PATH), or set the server "
  .. "command with require('starcoder').setup({ cmd = { ... } }). See :checkhealth starcoder"

function M.reset_failures()
  M.failures = { count = 0, last = 0, notified = false }
end

--- All running starcoder clients (optionally those attached to `buf`).
function M.clients(buf)
  local get = vim.lsp.get_clients or vim.lsp.get_active_clients
  return get({ name = M.NAME, bufnr = buf })
end

--- The starcoder client attached to `buf` (default: current), or nil.
function M.get(buf)
  buf = buf or vim.api.nvim_get_current_buf()
  return M.clients(buf)[1]
end

-- Method calls differ between 0.10 (client.request(...)) and 0.11+ (client:request(...)).
function M.request(client, method, params, handler, buf)
  if has_011 then
    return client:request(method, params, handler, buf)
  end
  return client.request(method, params, handler, buf)
end

function M.request_sync(client, method, params, timeout_ms, buf)
  if has_011 then
    return client:request_sync(method, params, timeout_ms, buf)
  end
  return client.request_sync(method, params, timeout_ms, buf)
end

function M.cancel(client, request_id)
  if has_011 then
    return client:cancel_request(request_id)
  end
  return client.cancel_request(request_id)
end

function M.notify(client, method, params)
  if has_011 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.stop(client)
  if has_011 then
    return client:stop()
  end
  return client.stop()
end

--- Run a server command (workspace/executeCommand). Async unless `timeout_ms` is given.
function M.exec(client, command, arguments, timeout_ms, buf)
  local params = { command = command, arguments = arguments or {} }
  if timeout_ms then
    local res, err = M.request_sync(client, "workspace/executeCommand", params, timeout_ms, buf)
    if not res then
      return nil, err or "timeout"
    end
    if res.err then
      return nil, res.err.message or vim.inspect(res.err)
    end
    return res.result, nil
  end
  return M.request(client, "workspace/executeCommand", params, function() end, buf)
end

local function capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  caps.textDocument = caps.textDocument or {}
  -- LSP 3.18 inline completion; Neovim < 0.12 does not advertise it itself.
  caps.textDocument.inlineCompletion = caps.textDocument.inlineCompletion
    or { dynamicRegistration = false }
  return caps
end

local function root_dir(buf, markers)
  local root = vim.fs.root and vim.fs.root(buf, markers) or nil
  if root then
    return root
  end
  local name = vim.api.nvim_buf_get_name(buf)
  if name ~= "" then
    return vim.fs.dirname(vim.fs.normalize(name))
  end
  return vim.uv.cwd()
end

--- Whether the config wants this buffer.
function M.wants(buf, cfg)
  if vim.bo[buf].buftype ~= "" then
    return false
  end
  local ft = vim.bo[buf].filetype
  if ft == "" then
    return false
  end
  for _, f in ipairs(cfg.filetypes) do
    if f == "*" or f == ft then
      return true
    end
  end
  return false
end

--- Start (or reuse) the server for `buf` and attach. Returns the client id or nil.
function M.ensure(buf)
  local cfg = state.config
  if not cfg or not state.enabled or not M.wants(buf, cfg) then
    return nil
  end
  local existing = M.get(buf)
  if existing then
    return existing.id
  end
  local f = M.failures
  if f.count >= M.MAX_FAILURES then
    return nil
  end
  if f.count > 0 and (vim.uv.now() - f.last) < M.RETRY_MS * f.count then
    return nil
  end
  local exe = cfg.cmd[1]
  if vim.fn.executable(exe) ~= 1 then
    -- Not a crash loop: a missing program stays missing until setup() is called again.
    f.count, f.last = M.MAX_FAILURES, vim.uv.now()
    notify_once(("starcoder: the server command `%s` was not found. %s"):format(exe, FIX))
    return nil
  end
  local started = false
  local ok, id = pcall(vim.lsp.start, {
    name = M.NAME,
    cmd = cfg.cmd,
    root_dir = root_dir(buf, cfg.root_markers),
    init_options = cfg.settings,
    settings = { starcoder = cfg.settings },
    capabilities = capabilities(),
    on_init = function()
      started = true
      M.reset_failures()
    end,
    on_exit = function(code, signal)
      if started and code == 0 then
        return
      end
      local fl = M.failures
      fl.count, fl.last = fl.count + 1, vim.uv.now()
      local what = started and "stopped" or "failed to start"
      notify_once(("starcoder: the server (%s) %s (exit code %s, signal %s). %s"):format(
        table.concat(cfg.cmd, " "), what, tostring(code), tostring(signal), FIX))
    end,
  }, { bufnr = buf })
  if not ok or not id then
    f.count, f.last = f.count + 1, vim.uv.now()
    notify_once(("starcoder: could not start the server (%s): %s. %s"):format(
      table.concat(cfg.cmd, " "), tostring(id), FIX))
    return nil
  end
  return id
end

--- Send changed settings to running clients (pull-model servers ask back; we answer them).
function M.reconfigure(cfg)
  for _, client in ipairs(M.clients()) do
    client.settings = { starcoder = cfg.settings }
    M.notify(client, "workspace/didChangeConfiguration", { settings = { starcoder = cfg.settings } })
  end
end

--- Convert an LSP character offset on `row` to a byte column.
function M.byte_col(buf, row, character, encoding)
  if encoding == "utf-8" or encoding == nil then
    return character
  end
  local line = vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ""
  local ok, col
  if has_011 then
    ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, character, encoding == "utf-16")
  end
  return ok and col or #line
end

return M
