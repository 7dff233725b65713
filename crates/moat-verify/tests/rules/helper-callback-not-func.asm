# rule: bpf_loop's callback must be a function of the program.
# context: buffer 8
# reject: HelperArg at 4
mov %r1, 4
mov %r2, 0
mov %r3, 0
mov %r4, 0
call 181
exit
