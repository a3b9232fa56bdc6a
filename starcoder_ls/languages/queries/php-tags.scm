; Definitions for the workspace outline (starcoder_ls.context.tags).
; Captures: @definition.KIND, @name, @body (the header stops at it); @scope.function marks
; closures, whose contents are not symbols.

(class_declaration
  name: (name) @name
  body: (_) @body) @definition.class

(interface_declaration
  name: (name) @name
  body: (_) @body) @definition.interface

(trait_declaration
  name: (name) @name
  body: (_) @body) @definition.trait

(enum_declaration
  name: (name) @name
  body: (_) @body) @definition.enum

(function_definition
  name: (name) @name
  body: (_) @body) @definition.function

(method_declaration
  name: (name) @name
  body: (_)? @body) @definition.method

(anonymous_function) @scope.function
(arrow_function) @scope.function
