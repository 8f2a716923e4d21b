/*
 * main.c - floodgated: argument parsing and wiring (being built; see ARCHITECTURE.md).
 */
#include <stdio.h>

int
main(void)
{
    fputs("floodgated: not wired yet\n", stderr);
    return 1;
}
