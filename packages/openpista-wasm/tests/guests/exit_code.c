/* Prints a valid result but exits with code 3 (a failure), stderr says why. */
#include <stdio.h>

int main(void) {
    printf("{\"output\": \"half done\", \"is_error\": false}\n");
    fprintf(stderr, "gave up halfway\n");
    return 3;
}
