---@mod starcoder StarCoder inline completion for Neovim (client of starcoder-ls).
local config = require("starcoder.config")
local state = require("starcoder.state")
local client = require("starcoder.client")
local ghost = require("starcoder.ghost")

local M = {}

local uv = vim.uv or vim.loop
local AUGROUP = "starcoder"
local ACCEPT, REJECT = "starcoder.accept", "starcoder.reject"
local TRIGGER_INVOKED, TRIGGER_AUTOMATIC = 1, 2

--- The request in flight / the debounce timer.
local pending = { timer = nil, client = nil, id = nil }
--- changedtick of our own accept edits (no new request for them).
local own_tick = {}
--- Insert-mode keys we mapped (so a second setup() can unmap them).
local mapped = {}

local function cancel_pending()
  if pending.timer then
    pending.timer:stop()
  end
  if pending.id and pending.client then
    pcall(client.cancel, pending.client, pending.id)
  end
  pending.client, pending.id = nil, nil
end

local function item_text(item)
  local t = item.insertText
  if type(t) == "table" then
    t = t.value
  end
  return type(t) == "string" and t or ""
end

--- The part of `item` still to insert at the cursor (row, col), or nil.
local function suggestion_for(buf, item, row, col, encoding)
  local text = item_text(item)
  local replace_end = col
  if item.range then
    local s, e = item.range.start, item.range["end"]
    if s.line ~= row or e.line ~= row then
      return nil
    end
    local scol = client.byte_col(buf, row, s.character, encoding)
    local ecol = client.byte_col(buf, row, e.character, encoding)
    if scol > col then
      return nil
    end
    local line = vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ""
    local typed = line:sub(scol + 1, col)
    if text:sub(1, #typed) ~= typed then
      return nil
    end
    text = text:sub(#typed + 1)
    replace_end = math.max(col, ecol)
  end
  if text == "" then
    return nil
  end
  return { text = text, replace_end = replace_end, command = item.command }
end

local function show_items(buf, c, items, index, row, col, tick)
  local cands = {}
  for _, item in ipairs(items) do
    local s = suggestion_for(buf, item, row, col, c.offset_encoding)
    if s then
      table.insert(cands, s)
    end
  end
  if #cands == 0 then
    ghost.clear()
    return
  end
  index = ((index - 1) % #cands) + 1
  local s = cands[index]
  ghost.show({
    buf = buf, row = row, col = col, tick = tick, text = s.text, replace_end = s.replace_end,
    command = s.command, client_id = c.id, cands = cands, index = index,
  })
end

local function in_insert()
  local mode = vim.api.nvim_get_mode().mode
  return mode:sub(1, 1) == "i"
end

--- Ask the server for a suggestion at the cursor now.
local function request_now(trigger_kind)
  if not state.enabled or not in_insert() then
    return
  end
  local buf = vim.api.nvim_get_current_buf()
  local c = client.get(buf)
  if not c then
    return
  end
  cancel_pending()
  local pos = vim.api.nvim_win_get_cursor(0)
  local row, col = pos[1] - 1, pos[2]
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  local params = vim.lsp.util.make_position_params(0, c.offset_encoding)
  params.context = { triggerKind = trigger_kind }
  M.stats.requests = M.stats.requests + 1
  local rid
  local ok, id = client.request(c, "textDocument/inlineCompletion", params, function(err, result)
    if pending.id == rid then
      pending.client, pending.id = nil, nil
    end
    if err or not result or not vim.api.nvim_buf_is_valid(buf) then
      return
    end
    if vim.api.nvim_get_current_buf() ~= buf or not in_insert()
      or vim.api.nvim_buf_get_changedtick(buf) ~= tick then
      return
    end
    local now = vim.api.nvim_win_get_cursor(0)
    if now[1] - 1 ~= row or now[2] ~= col then
      return
    end
    local items = result.items or result
    if type(items) ~= "table" or #items == 0 then
      return
    end
    show_items(buf, c, items, 1, row, col, tick)
    M.stats.shown = M.stats.shown + 1
  end, buf)
  if ok then
    rid = id
    pending.client, pending.id = c, id
  end
end

local function schedule_request(trigger_kind)
  cancel_pending()
  if not pending.timer then
    pending.timer = uv.new_timer()
  end
  local delay = trigger_kind == TRIGGER_INVOKED and 0 or state.config.debounce_ms
  pending.timer:start(delay, 0, vim.schedule_wrap(function()
    request_now(trigger_kind)
  end))
end

local function reject_current()
  local cur = ghost.current
  ghost.clear()
  if cur and cur.command and not cur.accepted then
    local c = vim.lsp.get_client_by_id(cur.client_id)
    if c and cur.command.arguments then
      pcall(client.exec, c, REJECT, cur.command.arguments)
    end
  end
end

-- Autocommand handlers -------------------------------------------------------------------------

local function on_text_changed()
  local buf = vim.api.nvim_get_current_buf()
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  if own_tick[buf] == tick then
    return
  end
  local cur = ghost.current
  if cur and cur.buf == buf and cur.tick == tick then
    return
  end
  -- Typing what the suggestion says keeps the rest of it on screen.
  if cur and cur.buf == buf then
    local pos = vim.api.nvim_win_get_cursor(0)
    local row, col = pos[1] - 1, pos[2]
    if row == cur.row and col > cur.col then
      local line = vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ""
      local typed = line:sub(cur.col + 1, col)
      if cur.text:sub(1, #typed) == typed and #typed < #cur.text and not typed:find("\n") then
        local rest = vim.tbl_extend("force", cur, {
          col = col, tick = tick, text = cur.text:sub(#typed + 1),
          replace_end = math.max(col, cur.replace_end + #typed),
        })
        ghost.show(rest)
        return
      end
    end
  end
  ghost.clear()
  if state.config.auto_trigger then
    schedule_request(TRIGGER_AUTOMATIC)
  else
    cancel_pending()
  end
end

local function on_cursor_moved()
  local cur = ghost.current
  if not cur then
    return
  end
  local buf = vim.api.nvim_get_current_buf()
  if cur.buf == buf and vim.api.nvim_buf_get_changedtick(buf) ~= cur.tick then
    return -- a text change: TextChangedI decides
  end
  if not ghost.visible(buf) then
    reject_current()
  end
end

-- Public API -----------------------------------------------------------------------------------

--- Counters for tests and `:StarCoder status`.
M.stats = { requests = 0, shown = 0, accepted = 0 }

--- Whether a suggestion is visible at the cursor.
function M.is_visible()
  return ghost.visible()
end

--- The ghost text on screen in the current buffer (nil when none).
function M.suggestion()
  return ghost.current and ghost.visible() and ghost.current.text or nil
end

local function next_word(text)
  return text:match("^\n[ \t]*") or text:match("^[ \t]*[%w_]+") or text:match("^[ \t]*[^%w_%s]+")
    or text:match("^[ \t]+") or text:sub(1, 1)
end

local function next_line(text)
  local first = text:match("^[^\n]+")
  return first or text:match("^\n[^\n]*")
end

local function accept_part(kind)
  if not ghost.visible() then
    return false
  end
  local cur = ghost.current
  local buf = cur.buf
  local part = cur.text
  if kind == "word" then
    part = next_word(cur.text)
  elseif kind == "line" then
    part = next_line(cur.text)
  end
  local rest = cur.text:sub(#part + 1)
  local lines = vim.split(part, "\n", { plain = true })
  local end_col = cur.col
  if rest == "" then
    local line = vim.api.nvim_buf_get_lines(buf, cur.row, cur.row + 1, false)[1] or ""
    end_col = math.min(math.max(cur.replace_end or cur.col, cur.col), #line)
  end
  ghost.clear()
  vim.api.nvim_buf_set_text(buf, cur.row, cur.col, cur.row, end_col, lines)
  local new_row = cur.row + #lines - 1
  local new_col = #lines == 1 and (cur.col + #lines[1]) or #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { new_row + 1, new_col })
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  own_tick[buf] = tick
  if not cur.accepted and cur.command then
    cur.accepted = true
    M.stats.accepted = M.stats.accepted + 1
    local c = vim.lsp.get_client_by_id(cur.client_id)
    if c then
      pcall(client.exec, c, cur.command.command or ACCEPT, cur.command.arguments)
    end
  end
  if rest ~= "" then
    ghost.show(vim.tbl_extend("force", cur, {
      row = new_row, col = new_col, tick = tick, text = rest,
      replace_end = new_col + math.max(0, (cur.replace_end or cur.col) - end_col),
      cands = nil,
    }))
  end
  return true
end

--- Insert the whole suggestion at the cursor. Returns false when none is visible.
function M.accept()
  return accept_part("all")
end

--- Insert the next word of the suggestion; the rest stays on screen.
function M.accept_word()
  return accept_part("word")
end

--- Insert the rest of the suggestion's current line; the rest stays on screen.
function M.accept_line()
  return accept_part("line")
end

--- Hide the suggestion (tells the server it was rejected).
function M.dismiss()
  cancel_pending()
  local had = ghost.current ~= nil
  reject_current()
  return had
end

local function cycle(step)
  local cur = ghost.current
  if not cur or not ghost.visible() or not cur.cands or #cur.cands < 2 then
    return false
  end
  local index = ((cur.index - 1 + step) % #cur.cands) + 1
  local s = cur.cands[index]
  ghost.show(vim.tbl_extend("force", cur, {
    text = s.text, replace_end = s.replace_end, command = s.command, index = index,
  }))
  return true
end

--- Show the next / previous suggestion (when the server offered several).
function M.next()
  return cycle(1)
end

function M.prev()
  return cycle(-1)
end

--- Ask for a suggestion now (an explicit, "invoked" request: no debounce).
function M.trigger()
  local buf = vim.api.nvim_get_current_buf()
  client.ensure(buf)
  schedule_request(TRIGGER_INVOKED)
end

--- Turn completion on or off for this session.
function M.toggle()
  state.enabled = not state.enabled
  if not state.enabled then
    M.dismiss()
  else
    client.ensure(vim.api.nvim_get_current_buf())
  end
  vim.notify("starcoder: " .. (state.enabled and "enabled" or "disabled"), vim.log.levels.INFO)
  return state.enabled
end

--- The server's `starcoder.status` (a table), or nil and a reason.
function M.status(buf)
  local c = client.get(buf)
  if not c then
    c = client.clients()[1]
  end
  if not c then
    return nil, "no starcoder-ls client is running"
  end
  return client.exec(c, "starcoder.status", {}, 5000, buf)
end

--- The last prompt the server sent to the model for this buffer, in a scratch buffer.
--- Returns the scratch buffer, or nil and a reason.
function M.prompt(buf)
  buf = buf or vim.api.nvim_get_current_buf()
  local c = client.get(buf) or client.clients()[1]
  if not c then
    return nil, "no starcoder-ls client is running"
  end
  local uri = vim.uri_from_bufnr(buf)
  local res, err = client.exec(c, "starcoder.lastPrompt", { uri }, 5000, buf)
  if err then
    return nil, err
  end
  if type(res) ~= "table" or type(res.text) ~= "string" then
    return nil, "no prompt yet for this buffer"
  end
  local ft = vim.bo[buf].filetype
  vim.cmd("botright new")
  local scratch = vim.api.nvim_get_current_buf()
  vim.bo[scratch].buftype = "nofile"
  vim.bo[scratch].bufhidden = "wipe"
  vim.bo[scratch].swapfile = false
  pcall(vim.api.nvim_buf_set_name, scratch, "starcoder://prompt/" .. scratch)
  vim.api.nvim_buf_set_lines(scratch, 0, -1, false, vim.split(res.text, "\n", { plain = true }))
  vim.bo[scratch].filetype = ft
  vim.bo[scratch].modifiable = false
  vim.b[scratch].starcoder_prompt = {
    family = res.family, mode = res.mode, tokens = res.tokens, segments = res.segments,
  }
  return scratch
end

local SUBCOMMANDS = { "toggle", "status", "prompt", "trigger" }

--- `:StarCoder {sub}`.
function M.command(o)
  local sub = (o.fargs or {})[1] or o.args
  if sub == "toggle" then
    M.toggle()
  elseif sub == "trigger" then
    M.trigger()
  elseif sub == "status" then
    local res, err = M.status()
    if not res then
      vim.notify("starcoder: " .. tostring(err), vim.log.levels.WARN)
      return
    end
    vim.notify(("starcoder-ls %s: backend %s, model %s, backend %s, completion %s"):format(
      tostring(res.version), tostring(res.backend), tostring(res.model),
      res.backend_ok and "ok" or "NOT reachable", state.enabled and "on" or "off"),
      vim.log.levels.INFO)
  elseif sub == "prompt" then
    local scratch, err = M.prompt()
    if not scratch then
      vim.notify("starcoder: " .. tostring(err), vim.log.levels.WARN)
    end
  else
    vim.notify(("starcoder: unknown subcommand %q (use %s)"):format(
      tostring(sub), table.concat(SUBCOMMANDS, ", ")), vim.log.levels.ERROR)
  end
end

function M.complete(arglead)
  return vim.tbl_filter(function(s)
    return s:sub(1, #arglead) == arglead
  end, SUBCOMMANDS)
end

local function set_keymaps(keys)
  for lhs in pairs(mapped) do
    pcall(vim.keymap.del, "i", lhs)
  end
  mapped = {}
  local actions = {
    accept = M.accept, accept_word = M.accept_word, accept_line = M.accept_line,
    dismiss = M.dismiss, next = M.next, prev = M.prev,
  }
  for name, lhs in pairs(keys) do
    if lhs then
      if name == "trigger" then
        vim.keymap.set("i", lhs, M.trigger, { desc = "StarCoder: suggest", silent = true })
      elseif actions[name] then
        -- Only take the key while a suggestion is on screen; otherwise it does what it did.
        vim.keymap.set("i", lhs, function()
          if ghost.visible() then
            return ("<Cmd>lua require('starcoder').%s()<CR>"):format(name)
          end
          return lhs
        end, { expr = true, replace_keycodes = true, silent = true, desc = "StarCoder: " .. name })
      end
      mapped[lhs] = true
    end
  end
end

--- Configure the plugin. Safe to call again: it reconfigures in place.
---@param opts table|nil see |starcoder-options|
function M.setup(opts)
  local cfg, err = config.resolve(opts)
  if not cfg then
    vim.notify(err, vim.log.levels.ERROR, { title = "starcoder" })
    return false
  end
  local old = state.config
  state.config = cfg
  state.enabled = cfg.enabled
  client.reset_failures()
  vim.api.nvim_set_hl(0, "StarCoderSuggestion", { link = "Comment", default = true })

  local group = vim.api.nvim_create_augroup(AUGROUP, { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    callback = function(ev)
      client.ensure(ev.buf)
    end,
  })
  vim.api.nvim_create_autocmd("BufEnter", {
    group = group,
    callback = function(ev)
      if vim.bo[ev.buf].filetype ~= "" then
        client.ensure(ev.buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd("TextChangedI", { group = group, callback = on_text_changed })
  vim.api.nvim_create_autocmd("CursorMovedI", { group = group, callback = on_cursor_moved })
  vim.api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group,
    callback = function()
      M.dismiss()
    end,
  })
  set_keymaps(cfg.keymaps)

  if old then
    if not vim.deep_equal(old.cmd, cfg.cmd) then
      for _, c in ipairs(client.clients()) do
        client.stop(c)
      end
    else
      client.reconfigure(cfg)
    end
  end
  if state.enabled then
    for _, buf in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(buf) then
        client.ensure(buf)
      end
    end
  end
  state.setup_done = true
  return true
end

return M
