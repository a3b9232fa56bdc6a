; Definitions for the workspace outline (starcoder_ls.context.tags).
; Captures: @definition.KIND, @name, @body (the header stops at it), @sig_end (the header ends
; with it); @scope.impl names the type whose methods an impl block holds (not a symbol itself);
; @scope.function marks closures, whose contents are not symbols.

(function_item
  name: (identifier) @name
  body: (block) @body) @definition.function

(function_signature_item
  name: (identifier) @name) @definition.function

(struct_item
  name: (type_identifier) @name
  body: (field_declaration_list) @body) @definition.struct

(struct_item
  name: (type_identifier) @name) @definition.struct

(union_item
  name: (type_identifier) @name
  body: (field_declaration_list) @body) @definition.struct

(enum_item
  name: (type_identifier) @name
  body: (enum_variant_list) @body) @definition.enum

(trait_item
  name: (type_identifier) @name
  body: (declaration_list) @body) @definition.trait

(mod_item
  name: (identifier) @name
  body: (declaration_list) @body) @definition.module

(macro_definition
  name: (identifier) @name @sig_end) @definition.macro

(const_item
  name: (identifier) @name) @definition.constant

(static_item
  name: (identifier) @name) @definition.constant

(type_item
  name: (type_identifier) @name) @definition.type

(impl_item
  type: [
    (type_identifier) @name
    (generic_type type: (type_identifier) @name)
    (scoped_type_identifier name: (type_identifier) @name)
    (generic_type type: (scoped_type_identifier name: (type_identifier) @name))
  ]) @scope.impl

(closure_expression) @scope.function
