/* Prints text that is not the JSON result object the ABI asks for. */
#include <stdio.h>

int main(void) {
    printf("Hello! {this is not json\n");
    return 0;
}
