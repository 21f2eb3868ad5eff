/* Links the no_std static library into a C program and runs it: proves the
 * archive needs nothing from Rust's std (only libc's mem* functions) and that
 * the client and framer really run without it.
 *
 * core is precompiled with panic=unwind, so it names rust_eh_personality; with
 * panic=abort nothing ever unwinds, and this stub is never called. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

uint32_t qmp_nostd_check(void);

/* ALL_SEEN in src/lib.rs: every step of the session went as expected. */
#define ALL_SEEN 0x7f

void rust_eh_personality(void) { abort(); }

int main(void) {
    uint32_t seen = qmp_nostd_check();
    printf("qmp_nostd_check() = 0x%02x (want 0x%02x)\n", seen, ALL_SEEN);
    return seen == ALL_SEEN ? 0 : 1;
}
