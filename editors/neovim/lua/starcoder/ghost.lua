---@mod starcoder.ghost Ghost text: the suggestion drawn with extmarks after the cursor.
local M = {}

M.ns = vim.api.nvim_create_namespace("starcoder")

--- The suggestion on screen: { buf, row, col (0-based byte), text, tick, ... } or nil.
M.current = nil

local function hl()
  return require("starcoder.state").config and require("starcoder.state").config.hl_group
    or "StarCoderSuggestion"
end

function M.clear()
  local cur = M.current
  M.current = nil
  if cur and vim.api.nvim_buf_is_valid(cur.buf) then
    vim.api.nvim_buf_clear_namespace(cur.buf, M.ns, 0, -1)
  end
end

--- Draw `text` at (row, col) of `buf`: the first line inline at the cursor, the rest below it.
---@param shown table { buf, row, col, text, tick, items, index, request_id }
function M.show(shown)
  M.clear()
  local text = shown.text
  if text == nil or text == "" then
    return
  end
  local buf = shown.buf
  vim.api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  local lines = vim.split(text, "\n", { plain = true })
  local group = hl()
  local opts = { hl_mode = "combine", priority = 200 }
  if lines[1] ~= "" then
    opts.virt_text = { { lines[1], group } }
    opts.virt_text_pos = "inline"
  end
  if #lines > 1 then
    local virt_lines = {}
    for i = 2, #lines do
      local line = lines[i]:gsub("\t", string.rep(" ", vim.bo[buf].tabstop))
      table.insert(virt_lines, { { line, group } })
    end
    opts.virt_lines = virt_lines
  end
  shown.mark = vim.api.nvim_buf_set_extmark(buf, M.ns, shown.row, shown.col, opts)
  M.current = shown
end

--- Whether a suggestion is drawn in `buf` (default: current) at the cursor.
function M.visible(buf)
  local cur = M.current
  if not cur then
    return false
  end
  buf = buf or vim.api.nvim_get_current_buf()
  if cur.buf ~= buf or not vim.api.nvim_buf_is_valid(buf) then
    return false
  end
  local pos = vim.api.nvim_win_get_cursor(0)
  return pos[1] - 1 == cur.row and pos[2] == cur.col
end

--- What the extmarks of `buf` show, as plain text (tests and `:StarCoder status`).
function M.rendered(buf)
  buf = buf or vim.api.nvim_get_current_buf()
  local marks = vim.api.nvim_buf_get_extmarks(buf, M.ns, 0, -1, { details = true })
  if #marks == 0 then
    return nil
  end
  local d = marks[1][4]
  local parts = {}
  for _, chunk in ipairs(d.virt_text or {}) do
    table.insert(parts, chunk[1])
  end
  local out = { table.concat(parts) }
  for _, vl in ipairs(d.virt_lines or {}) do
    local p = {}
    for _, chunk in ipairs(vl) do
      table.insert(p, chunk[1])
    end
    table.insert(out, table.concat(p))
  end
  return table.concat(out, "\n"), marks[1][2], marks[1][3]
end

return M
