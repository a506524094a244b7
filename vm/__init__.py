"""lispvm.vm: values, the instruction set, the .lbc format, the verifier and the loop.

Imports neither lispvm.assembler nor lispvm.scheduler, and its modules import each other without
a cycle, inside functions included (tests/test_layering.py checks both). From the bottom: the
builtin table (registry); values; errors; the instruction set and the file format (opcodes,
lbc); the state of processes and of the loop (process, state); boxes; the builtins (checks, gpu,
builtins); the loop (loopsupport, the generated _generated_loop, interp; then fast); verify,
prelude and codec above what they use.
"""
