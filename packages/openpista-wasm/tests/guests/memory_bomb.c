/* Allocates (and touches) 1 MiB blocks until the memory cap refuses one, then aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kept reachable so that the compiler cannot drop the allocations. */
char *volatile last_block;

int main(void) {
    for (unsigned long blocks = 0;; blocks++) {
        char *block = malloc(1 << 20);
        if (block == NULL) {
            fprintf(stderr, "out of memory after %lu MiB\n", blocks);
            abort();
        }
        memset(block, 1, 1 << 20);
        last_block = block;
    }
}
