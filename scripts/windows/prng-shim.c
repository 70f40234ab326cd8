/* bcryptprimitives.dll for Wine 8.0, which lacks it. Rust's std (>= 1.78) imports ProcessPrng
 * from it for HashMap seeds and the like; without the DLL every Rust .exe exits with code 53
 * before main. RtlGenRandom (advapi32's SystemFunction036) gives the same guarantee.
 * Test-only: real Windows 10+ ships this DLL and never loads this file. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
