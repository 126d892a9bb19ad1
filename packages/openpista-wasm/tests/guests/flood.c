/* Writes to stdout without end and ignores write errors: only a stop ends it. */
#include <string.h>
#include <unistd.h>

int main(void) {
    static char chunk[65536];
    memset(chunk, 'x', sizeof chunk);
    for (;;) write(1, chunk, sizeof chunk);
}
