; inherits: typescript
; The TSX grammar shares the TypeScript node names.
