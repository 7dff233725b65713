# callx to a code address loaded with lddw (relative to the slot after lddw's first) calls the function.
# result: 0x2a
lddw %r2, code(+3)
call %r2
exit
mov %r0, 42
exit
