; Definitions for the workspace outline (starcoder_ls.context.tags).
; Captures: @definition.KIND, @name, @body (the header stops at it), @parent (an explicit
; parent name: a method's receiver type), @decl (the declaration holding a spec: when it holds
; only this one, the symbol starts there, so `type X struct` keeps its keyword).

(function_declaration
  name: (identifier) @name
  body: (block)? @body) @definition.function

(method_declaration
  receiver: (parameter_list
    (parameter_declaration
      type: [
        (type_identifier) @parent
        (pointer_type (type_identifier) @parent)
        (generic_type type: (type_identifier) @parent)
        (pointer_type (generic_type type: (type_identifier) @parent))
      ]))
  name: (field_identifier) @name
  body: (block)? @body) @definition.method

(type_declaration
  (type_spec
    name: (type_identifier) @name
    type: (struct_type (field_declaration_list) @body)) @definition.struct) @decl

(type_declaration
  (type_spec
    name: (type_identifier) @name
    type: (interface_type "{" @body)) @definition.interface) @decl

(type_declaration
  (type_spec
    name: (type_identifier) @name) @definition.type) @decl

(type_declaration
  (type_alias
    name: (type_identifier) @name) @definition.type) @decl

(source_file
  (const_declaration
    (const_spec
      name: (identifier) @name) @definition.constant) @decl)

(func_literal) @scope.function
