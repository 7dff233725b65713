# callx to the JIT's executable code (the entry trampoline).
# expect: BadCallTarget at 2
lddw %r2, {CODE}
call %r2
exit
