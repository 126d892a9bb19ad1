/* Tries to create a file in the workspace (mounted read-only) and reports what happened. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    FILE *relative = fopen("created-by-wasm.txt", "w");
    int relative_errno = errno;
    FILE *absolute = fopen("/workspace/created-by-wasm.txt", "w");
    int absolute_errno = errno;
    FILE *existing = fopen("notes.txt", "a");
    int existing_errno = errno;
    printf("{\"output\": \"relative=%s; absolute=%s; append=%s\", \"is_error\": false}\n",
           relative ? "written" : strerror(relative_errno),
           absolute ? "written" : strerror(absolute_errno),
           existing ? "written" : strerror(existing_errno));
    return 0;
}
