---@mod starcoder.health `:checkhealth starcoder`
local M = {}

local health = vim.health or require("health")
local start = health.start or health.report_start
local ok = health.ok or health.report_ok
local warn = health.warn or health.report_warn
local error = health.error or health.report_error
local info = health.info or health.report_info

function M.check()
  start("starcoder: Neovim")
  local v = vim.version()
  local version = ("%d.%d.%d"):format(v.major, v.minor, v.patch)
  if vim.fn.has("nvim-0.10") == 1 then
    ok("Neovim " .. version)
  else
    error("Neovim " .. version .. " is too old", { "starcoder.nvim needs Neovim 0.10 or newer" })
  end
  if vim.fn.has("nvim-0.12") == 1 then
    info("Neovim 0.12+ can also use starcoder-ls directly with vim.lsp.inline_completion.enable()")
  end

  start("starcoder: server command")
  local state = require("starcoder.state")
  local cfg = state.config
  if not cfg then
    warn("setup() has not been called; checking the default command",
      { "call require('starcoder').setup({}) in your config" })
    cfg = require("starcoder.config").defaults
  end
  local cmd = cfg.cmd
  info("cmd = " .. vim.inspect(cmd))
  if vim.fn.executable(cmd[1]) ~= 1 then
    error(("`%s` not found"):format(cmd[1]), {
      "pip install starcoder-ls (in an environment on your PATH)",
      "or set the command: require('starcoder').setup({ cmd = { '/path/to/starcoder-ls' } })",
    })
  else
    local argv = vim.list_extend(vim.deepcopy(cmd), { "--version" })
    local res = vim.system(argv, { text = true }):wait(20000)
    local out = vim.trim((res.stdout or "") .. (res.stderr or ""))
    if res.code == 0 and out ~= "" then
      ok(("found `%s`: %s"):format(cmd[1], out))
    else
      error(("`%s --version` failed (exit %s): %s"):format(table.concat(cmd, " "),
        tostring(res.code), out), { "reinstall: pip install --force-reinstall starcoder-ls" })
    end
  end

  start("starcoder: language server")
  info("completion is " .. (state.enabled and "enabled" or "disabled (:StarCoder toggle)"))
  local clients = require("starcoder.client").clients()
  if #clients == 0 then
    info("no starcoder-ls client is running (open a file of a configured filetype)")
    return
  end
  local res, err = require("starcoder").status()
  if not res then
    error("starcoder.status failed: " .. tostring(err))
    return
  end
  ok(("server %s running (client id %d)"):format(tostring(res.version), clients[1].id))
  if res.model and res.model ~= "" then
    ok(("model loaded: %s (backend %s)"):format(tostring(res.model), tostring(res.backend)))
  else
    warn("no model reported")
  end
  if res.backend_ok then
    ok("backend reachable")
  else
    error("backend NOT reachable", { "check settings.backend / settings.url / settings.model" })
  end
  if res.inline_completion_client == false then
    warn("the server does not see inline-completion support in this client")
  end
end

return M
