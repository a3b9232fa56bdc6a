; Definitions for the workspace outline (starcoder_ls.context.tags).
; Captures: @definition.KIND, @name, @body (the header stops at it), @outer (a template
; declaration: leading comments sit above it). A qualified name (`Foo::run`) gives its last part
; as the name and the part before as the parent. Functions inside a class body become methods.

(template_declaration
  [
    (class_specifier name: (_) @name body: (_) @body) @definition.class
    (struct_specifier name: (_) @name body: (_) @body) @definition.struct
    (function_definition
      declarator: (function_declarator
        declarator: [(identifier) (field_identifier) (destructor_name) (operator_name)] @name)
      body: (_) @body) @definition.function
    (function_definition
      declarator: (function_declarator declarator: (qualified_identifier) @name)
      body: (_) @body) @definition.method
  ]) @outer

(function_definition
  declarator: [
    (function_declarator
      declarator: [(identifier) (field_identifier) (destructor_name) (operator_name)] @name)
    (pointer_declarator
      declarator: (function_declarator
        declarator: [(identifier) (field_identifier) (operator_name)] @name))
    (reference_declarator
      (function_declarator
        declarator: [(identifier) (field_identifier) (operator_name)] @name))
  ]
  body: (_) @body) @definition.function

(function_definition
  declarator: [
    (function_declarator declarator: (qualified_identifier) @name)
    (pointer_declarator declarator: (function_declarator declarator: (qualified_identifier) @name))
    (reference_declarator (function_declarator declarator: (qualified_identifier) @name))
  ]
  body: (_) @body) @definition.method

; Prototypes and member declarations: int f(int); virtual void run() = 0;
(declaration
  declarator: [
    (function_declarator
      declarator: [(identifier) (field_identifier) (destructor_name) (operator_name)] @name)
    (pointer_declarator
      declarator: (function_declarator
        declarator: [(identifier) (field_identifier) (operator_name)] @name))
    (reference_declarator
      (function_declarator
        declarator: [(identifier) (field_identifier) (operator_name)] @name))
  ]) @definition.function

(field_declaration
  declarator: [
    (function_declarator
      declarator: [(identifier) (field_identifier) (destructor_name) (operator_name)] @name)
    (pointer_declarator
      declarator: (function_declarator
        declarator: [(identifier) (field_identifier) (operator_name)] @name))
    (reference_declarator
      (function_declarator
        declarator: [(identifier) (field_identifier) (operator_name)] @name))
  ]) @definition.function

(namespace_definition
  name: (_) @name
  body: (_) @body) @definition.module

(class_specifier
  name: (_) @name
  body: (_) @body) @definition.class

(struct_specifier
  name: (_) @name
  body: (_) @body) @definition.struct

(union_specifier
  name: (_) @name
  body: (_) @body) @definition.struct

(enum_specifier
  name: (_) @name
  body: (_) @body) @definition.enum

(type_definition
  type: [(struct_specifier !name body: (_)) (union_specifier !name body: (_))]
  declarator: (type_identifier) @name) @definition.struct

(type_definition
  type: (enum_specifier !name body: (_))
  declarator: (type_identifier) @name) @definition.enum

(type_definition
  declarator: (type_identifier) @name) @definition.type

(alias_declaration
  name: (type_identifier) @name) @definition.type

(preproc_function_def
  name: (identifier) @name) @definition.macro

(preproc_def
  name: (identifier) @name
  value: (_)) @definition.constant

(lambda_expression) @scope.function
