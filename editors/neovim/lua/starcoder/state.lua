---@mod starcoder.state Shared mutable state of the plugin (one table, so modules agree).
return {
  --- The resolved config (see starcoder.config), set by setup().
  config = nil,
  --- Runtime on/off (`:StarCoder toggle`), starts as config.enabled.
  enabled = true,
  --- Whether setup() has run.
  setup_done = false,
}
