# rule: a function sees only r1-r5 from its caller; r6-r9 start uninitialised.
# context: buffer 8
# reject: UninitRegister at 3
mov %r6, 1                  # 0
call local f                # 1
exit                        # 2
f:
mov %r0, %r6                # 3
exit
