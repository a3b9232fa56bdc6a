; Definitions for the workspace outline (starcoder_ls.context.tags).
; Captures: @definition.KIND, @name, @body (the header stops at it); @scope.function marks
; lambdas and anonymous methods, whose contents are not symbols.

(namespace_declaration
  name: (_) @name
  body: (_) @body) @definition.module

(class_declaration
  name: (identifier) @name
  body: (_)? @body) @definition.class

(record_declaration
  name: (identifier) @name
  body: (_)? @body) @definition.class

(struct_declaration
  name: (identifier) @name
  body: (_)? @body) @definition.struct

(interface_declaration
  name: (identifier) @name
  body: (_)? @body) @definition.interface

(enum_declaration
  name: (identifier) @name
  body: (_)? @body) @definition.enum

(delegate_declaration
  name: (identifier) @name) @definition.type

(method_declaration
  name: (identifier) @name
  body: (_)? @body) @definition.method

(constructor_declaration
  name: (identifier) @name
  body: (_)? @body) @definition.method

(local_function_statement) @scope.function
(lambda_expression) @scope.function
(anonymous_method_expression) @scope.function
