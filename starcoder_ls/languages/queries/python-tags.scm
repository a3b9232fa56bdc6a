; Definitions for the workspace outline (starcoder_ls.context.tags).
; Captures: @definition.KIND the whole definition, @name its name, @body the node the header
; stops at, @outer a wrapper whose start is where leading comments are looked for.

(decorated_definition
  definition: (class_definition
    name: (identifier) @name
    body: (block) @body) @definition.class) @outer

(decorated_definition
  definition: (function_definition
    name: (identifier) @name
    body: (block) @body) @definition.function) @outer

(class_definition
  name: (identifier) @name
  body: (block) @body) @definition.class

(function_definition
  name: (identifier) @name
  body: (block) @body) @definition.function

; Module-level ALL_CAPS assignments.
(module
  (expression_statement
    (assignment
      left: (identifier) @name) @definition.constant)
  (#match? @name "^_*[A-Z][A-Z0-9_]*$"))

(module
  (type_alias_statement
    left: (type (identifier) @name)) @definition.type)
