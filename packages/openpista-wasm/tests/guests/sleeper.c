/* Blocks for 3 s inside a WASI call (poll_oneoff), where epoch interruption cannot reach. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    sleep(3);
    printf("{\"output\": \"woke up\", \"is_error\": false}\n");
    return 0;
}
