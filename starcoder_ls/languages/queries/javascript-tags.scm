; inherits: ecmascript
; Definitions for the workspace outline (starcoder_ls.context.tags).
; Captures: @definition.KIND the whole definition, @name its name, @body the node the header
; stops at; @scope.function marks anonymous functions, whose contents are not symbols.

(function_declaration
  name: (identifier) @name
  body: (_) @body) @definition.function

(generator_function_declaration
  name: (identifier) @name
  body: (_) @body) @definition.function

(class_declaration
  name: (_) @name
  body: (_) @body) @definition.class

(class_body
  (method_definition
    name: (_) @name
    body: (_) @body) @definition.method)

(class_body
  (field_definition
    property: (_) @name
    value: [
      (arrow_function body: (_) @body)
      (function_expression body: (_) @body)
    ]) @definition.method)

; const f = (...) => ..., const f = function (...) {...}, const C = class {...}
(lexical_declaration
  (variable_declarator
    name: (identifier) @name
    value: [
      (arrow_function body: (_) @body)
      (function_expression body: (_) @body)
      (generator_function body: (_) @body)
    ])) @definition.function

(variable_declaration
  (variable_declarator
    name: (identifier) @name
    value: [
      (arrow_function body: (_) @body)
      (function_expression body: (_) @body)
      (generator_function body: (_) @body)
    ])) @definition.function

(lexical_declaration
  (variable_declarator
    name: (identifier) @name
    value: (class body: (_) @body))) @definition.class

(variable_declaration
  (variable_declarator
    name: (identifier) @name
    value: (class body: (_) @body))) @definition.class

(arrow_function) @scope.function
(function_expression) @scope.function
(generator_function) @scope.function
