/* Traps: `unreachable` by default, an out-of-bounds store when stdin mentions "oob". */
#include <stdio.h>
#include <string.h>

int main(void) {
    char input[256] = {0};
    fread(input, 1, sizeof input - 1, stdin);
    fprintf(stderr, "about to trap\n");
    if (strstr(input, "oob") != NULL) {
        *(volatile int *)0xFFFFFFF0u = 1;
    }
    __builtin_trap();
}
