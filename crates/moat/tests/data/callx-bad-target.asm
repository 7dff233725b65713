# callx to a number that is no helper and no function.
# error: BadCallTarget at 1
mov %r2, 12345
call %r2
exit
