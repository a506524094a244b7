"""lispvm.vm: values, the instruction set, the .lbc format, the verifier and the loop.

Imports neither lispvm.assembler nor lispvm.scheduler (tests/test_layering.py checks it).
"""
