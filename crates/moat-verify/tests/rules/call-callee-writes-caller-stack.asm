# rule: a function may write to its caller's stack through a pointer argument (twin of call-stale-stack-pointer).
# context: buffer 8
# accept
stdw [%r10-8], 0            # 0
mov %r1, %r10               # 1
add %r1, -8                 # 2
call local f                # 3
ldxdw %r0, [%r10-8]         # 4
exit
f:
stdw [%r1+0], 7
mov %r0, 0
exit
