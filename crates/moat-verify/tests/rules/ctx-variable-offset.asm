# rule: the context may not be addressed with a variable offset.
# context: tc
# reject: VariableCtxAccess at 3
ldxw %r2, [%r1+0]           # 0: len
and %r2, 4                  # 1
add %r1, %r2                # 2
ldxw %r0, [%r1+0]           # 3
exit
