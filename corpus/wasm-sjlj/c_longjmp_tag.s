# The exception tag that LLVM's lowering of longjmp throws and its try_tables
# catch (see wasm_sjlj.c): one i32 parameter, the address of {env, val}.
# Defined once, here, since the lowered code only refers to it. C has no
# syntax for a tag, hence assembly.
	.tagtype	__c_longjmp i32
	.globl	__c_longjmp
__c_longjmp:
