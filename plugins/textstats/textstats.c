/*
 * textstats: the example directory plugin of openpista (C, built for wasm32-wasi).
 *
 * Two tools in one module; argv[0] names the tool being called:
 *   count  {"text": "..."}          -> the number of lines, words and characters of text
 *   peek   {"file": "notes/x.txt"}  -> the first line of a file of the workspace directory
 *                                     `notes`, the only one plugin.toml grants (read-only)
 * ABI (docs/wasm.md): arguments as one JSON object on stdin; one JSON object on stdout,
 * {"output": "...", "is_error": false}.
 *
 * Build: clang --target=wasm32-wasi -O2 -s -o textstats.wasm textstats.c
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT 65536
#define MAX_LINE 512

/* The escaped text of the JSON string value of "key" in `json` (a malloc'd copy, without
 * the quotes), or NULL when the key is absent or not a string. */
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

static void print_escaped(const char *text) {
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c == '"' || *c == '\\') printf("\\%c", *c);
        else if (*c < 0x20) printf("\\u%04x", *c);
        else putchar(*c);
    }
}

static void fail(const char *message, const char *detail) {
    printf("{\"output\": \"");
    print_escaped(message);
    if (detail != NULL) {
        printf(": ");
        print_escaped(detail);
    }
    printf("\", \"is_error\": true}\n");
}

/* Counts over the escaped text: "\n" escapes are line breaks, other escapes one char. */
static void count(const char *input) {
    char *text = string_value(input, "text");
    if (text == NULL) {
        fail("give the text to count as `text`", NULL);
        return;
    }
    long lines = 0, words = 0, chars = 0;
    int in_word = 0, at_line_end = 1;
    for (const char *c = text; *c; c++) {
        int space = 0;
        at_line_end = 0;
        if (*c == '\\' && c[1] != '\0') {
            c++;
            space = (*c == 'n' || *c == 't' || *c == 'r');
            if (*c == 'n') { lines++; at_line_end = 1; }
        } else {
            space = (*c == ' ');
        }
        chars++;
        if (space) in_word = 0;
        else if (!in_word) { in_word = 1; words++; }
    }
    if (!at_line_end) lines++;  /* the last line, without a line break */
    printf("{\"output\": \"%ld lines, %ld words, %ld characters\", \"is_error\": false}\n",
           lines, words, chars);
    free(text);
}

static void peek(const char *input) {
    char *file = string_value(input, "file");
    if (file == NULL || strchr(file, '\\') != NULL) {
        fail("give a plain file path as `file`", NULL);
        free(file);
        return;
    }
    char path[MAX_LINE];
    snprintf(path, sizeof path, "/workspace/%s", file);
    FILE *handle = fopen(path, "r");
    if (handle == NULL) {
        fail(file, strerror(errno));
        free(file);
        return;
    }
    char line[MAX_LINE];
    if (fgets(line, sizeof line, handle) == NULL) line[0] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    fclose(handle);
    printf("{\"output\": \"");
    print_escaped(line);
    printf("\", \"is_error\": false}\n");
    free(file);
}

int main(int argc, char **argv) {
    static char input[MAX_INPUT + 1];
    size_t n = fread(input, 1, MAX_INPUT, stdin);
    input[n] = '\0';
    const char *tool = argc > 0 ? argv[0] : "";
    if (strcmp(tool, "count") == 0) count(input);
    else if (strcmp(tool, "peek") == 0) peek(input);
    else fail("unknown tool", tool);
    return 0;
}
