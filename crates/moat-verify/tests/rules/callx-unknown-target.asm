# rule: callx must call a known function.
# context: buffer 8
# reject: CallxTarget at 1
ldxdw %r2, [%r1+0]
call %r2
exit
