# rule: a jump must land inside the program.
# context: buffer 8
# reject: Program::JumpOutOfRange at 1
mov %r0, 0
ja +5
exit
