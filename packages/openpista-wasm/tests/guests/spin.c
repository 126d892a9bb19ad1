/* Never ends: a busy loop the time bound must stop. */
int main(void) {
    volatile unsigned long counter = 0;
    for (;;) counter++;
}
