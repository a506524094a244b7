"""lispvm.assembler: source and assembly text to bytecode (reader, expand, compile, lasm)."""
