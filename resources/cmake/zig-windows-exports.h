/* LM Studio Unlocked: force-included (-include) into every C/C++ file of a Windows build compiled by zig cc.
 *
 * ggml marks no symbol dllexport on MinGW, so the linker exports every symbol of a DLL, including the C
 * runtime's `atexit` and `_CRT_INIT` from zig's DLL start-up object (lld leaves out only the CRT objects it
 * knows by their GNU names, and zig's is called dllcrt2.obj). ggml-cpu.dll then links `atexit` twice: from its
 * own start-up object and from ggml-base.dll's import library ("lld-link: error: duplicate symbol: atexit").
 * This linker directive keeps both out of every DLL's exports (docs/build-anywhere.md).
 */
#if defined(_WIN32) && defined(__MINGW32__)
__asm__(".section .drectve\n\t.ascii \" -exclude-symbols:atexit,_CRT_INIT\"\n\t.text");
#endif
