#ifndef FLOODGATE_TESTRUN_H
#define FLOODGATE_TESTRUN_H

#include <check.h>

/* Run every test of @s (Check forks per test), free it, and return the exit status. */
int testrun_suite(Suite *s);

#endif
