# rule: a call chain using exactly 512 bytes of stack is accepted (twin of call-stack-combined).
# context: buffer 8
# accept
stdw [%r10-256], 0
call local f
exit
f:
stdw [%r10-256], 0
mov %r0, 0
exit
