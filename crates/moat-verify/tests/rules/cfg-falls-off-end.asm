# rule: execution may not run past the last instruction (a conditional jump cannot end the program).
# context: buffer 8
# reject: Program::FallsOffEnd at 1
mov %r0, 0
jeq %r2, 0, -2
