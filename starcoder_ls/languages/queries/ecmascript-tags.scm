; Shared by JavaScript and TypeScript (both grammars have these node names).

; Module-level constants with a literal value: `export const VERSION = "1.2"`, `const LIMIT = 5`
(program
  (lexical_declaration
    (variable_declarator
      name: (identifier) @name
      value: [(string) (number) (template_string) (true) (false) (regex)])) @definition.constant)

(program
  (export_statement
    declaration: (lexical_declaration
      (variable_declarator
        name: (identifier) @name
        value: [(string) (number) (template_string) (true) (false) (regex)])) @definition.constant))
