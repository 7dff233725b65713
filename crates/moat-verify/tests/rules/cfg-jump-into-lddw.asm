# rule: a jump may not land in the second half of lddw.
# context: buffer 8
# reject: Program::JumpIntoLddw at 1
mov %r0, 0
ja +1
lddw %r0, 1
exit
