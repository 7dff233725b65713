# rule: kernel function calls (kfuncs) have no meaning outside the kernel.
# context: buffer 8
# reject: Program::Kfunc at 0
call kfunc 1
exit
