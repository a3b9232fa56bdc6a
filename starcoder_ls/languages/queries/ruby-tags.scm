; Definitions for the workspace outline (starcoder_ls.context.tags).
; Captures: @definition.KIND, @name, @body (the header stops at it). `def` inside a class or
; module becomes a method; `class A::B` gives name B with parent A.

(class
  name: [(constant) (scope_resolution)] @name
  body: (_)? @body) @definition.class

(module
  name: [(constant) (scope_resolution)] @name
  body: (_)? @body) @definition.module

(method
  name: (_) @name
  body: (_)? @body) @definition.function

(singleton_method
  name: (_) @name
  body: (_)? @body) @definition.method
