; Definitions for the workspace outline (starcoder_ls.context.tags).
; Captures: @definition.KIND, @name, @sig_end (the header ends with it: the parameter list),
; @parent (the table of `function M.foo()`); @scope.function marks anonymous functions, whose
; contents are not symbols.

(function_declaration
  name: (identifier) @name
  parameters: (_) @sig_end) @definition.function

(function_declaration
  name: (dot_index_expression
    table: (_) @parent
    field: (identifier) @name)
  parameters: (_) @sig_end) @definition.function

(function_declaration
  name: (method_index_expression
    table: (_) @parent
    method: (identifier) @name)
  parameters: (_) @sig_end) @definition.method

; M.foo = function(...) ... end
(assignment_statement
  (variable_list
    .
    name: (dot_index_expression
      table: (_) @parent
      field: (identifier) @name))
  (expression_list
    .
    value: (function_definition
      parameters: (_) @sig_end))) @definition.function

(function_definition) @scope.function
