; inherits: ecmascript
; Definitions for the workspace outline (starcoder_ls.context.tags).
; Captures: @definition.KIND the whole definition, @name its name, @body the node the header
; stops at, @outer a wrapper whose start is where leading comments are looked for;
; @scope.function marks anonymous functions, whose contents are not symbols.

(export_statement
  (decorator)
  declaration: [
    (class_declaration name: (_) @name body: (_) @body)
    (abstract_class_declaration name: (_) @name body: (_) @body)
  ] @definition.class) @outer

(function_declaration
  name: (identifier) @name
  body: (_) @body) @definition.function

(generator_function_declaration
  name: (identifier) @name
  body: (_) @body) @definition.function

(function_signature
  name: (identifier) @name) @definition.function

(class_declaration
  name: (_) @name
  body: (_) @body) @definition.class

(abstract_class_declaration
  name: (_) @name
  body: (_) @body) @definition.class

(interface_declaration
  name: (_) @name
  body: (_) @body) @definition.interface

(type_alias_declaration
  name: (_) @name) @definition.type

(enum_declaration
  name: (_) @name
  body: (_) @body) @definition.enum

(internal_module
  name: (_) @name
  body: (_) @body) @definition.module

(module
  name: (_) @name
  body: (_) @body) @definition.module

(class_body
  (method_definition
    name: (_) @name
    body: (_) @body) @definition.method)

(class_body
  [(method_signature name: (_) @name) (abstract_method_signature name: (_) @name)]
  @definition.method)

(interface_body
  (method_signature
    name: (_) @name) @definition.method)

(class_body
  (public_field_definition
    name: (_) @name
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
