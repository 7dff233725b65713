# rule: a call must name a helper with a known prototype.
# context: buffer 8
# reject: UnknownHelper at 0
call 9999
exit
