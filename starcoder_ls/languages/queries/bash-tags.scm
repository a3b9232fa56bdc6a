; Definitions for the workspace outline (starcoder_ls.context.tags).

(function_definition
  name: (word) @name
  body: (_) @body) @definition.function
