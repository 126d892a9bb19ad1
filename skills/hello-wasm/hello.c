/*
 * hello-wasm: the example WASM skill of openpista (C, built for wasm32-wasi).
 *
 * ABI: the tool-call arguments arrive as one JSON object on stdin; the skill prints one JSON
 * object on stdout: {"output": "...", "is_error": false}.
 *
 * It greets `name` (default "world") and, when `file` names a file of the workspace (mounted
 * read-only as the current directory), adds the file's first line. No JSON library: a string
 * value is located and copied verbatim, since the escaped text of a JSON string is valid
 * inside another JSON string.
 *
 * Build: see skills/README.md (clang --target=wasm32-wasi ... -o hello.wasm hello.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT 65536
#define MAX_LINE 512

/* Find the JSON string value of "key" in the object `json`; returns its escaped text
 * (a malloc'd copy, without the quotes) or NULL when the key is absent or not a string. */
static char *string_value(const char *json, const char *key) {
    size_t key_len = strlen(key);
    for (const char *p = strchr(json, '"'); p != NULL; p = strchr(p + 1, '"')) {
        if (strncmp(p + 1, key, key_len) != 0 || p[1 + key_len] != '"') continue;
        const char *q = p + key_len + 2;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
        if (*q != ':') continue;
        q++;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
        if (*q != '"') return NULL;
        const char *start = ++q;
        while (*q != '\0' && *q != '"') q += (*q == '\\' && q[1] != '\0') ? 2 : 1;
        if (*q != '"') return NULL;
        size_t len = (size_t)(q - start);
        char *value = malloc(len + 1);
        if (value == NULL) return NULL;
        memcpy(value, start, len);
        value[len] = '\0';
        return value;
    }
    return NULL;
}

/* Print `text` as the content of a JSON string (escaping quotes, backslashes, controls). */
static void print_escaped(const char *text) {
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c == '"' || *c == '\\') printf("\\%c", *c);
        else if (*c < 0x20) printf("\\u%04x", *c);
        else putchar(*c);
    }
}

/* Whether `escaped` holds a JSON escape sequence (then it is not a plain file name). */
static int has_escapes(const char *escaped) { return strchr(escaped, '\\') != NULL; }

int main(void) {
    static char input[MAX_INPUT + 1];
    size_t n = fread(input, 1, MAX_INPUT, stdin);
    input[n] = '\0';

    char *name = string_value(input, "name");
    char *file = string_value(input, "file");

    printf("{\"output\": \"Hello, %s! (from WebAssembly)", name ? name : "world");
    int failed = 0;
    if (file != NULL) {
        FILE *handle = has_escapes(file) ? NULL : fopen(file, "r");
        if (handle == NULL) {
            printf(" Cannot read ");
            print_escaped(file);
            printf(": ");
            print_escaped(strerror(has_escapes(file) ? EINVAL : errno));
            failed = 1;
        } else {
            char line[MAX_LINE];
            if (fgets(line, sizeof line, handle) == NULL) line[0] = '\0';
            line[strcspn(line, "\r\n")] = '\0';
            fclose(handle);
            printf(" The first line of ");
            print_escaped(file);
            printf(" is: ");
            print_escaped(line);
        }
    }
    printf("\", \"is_error\": %s}\n", failed ? "true" : "false");
    free(name);
    free(file);
    return 0;
}
