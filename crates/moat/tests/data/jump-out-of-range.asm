# A jump past the end of the program is refused at load time.
# error: JumpOutOfRange
mov %r0, 0
ja +10
exit
