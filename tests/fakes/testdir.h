#ifndef FLOODGATE_TESTDIR_H
#define FLOODGATE_TESTDIR_H

#include <stddef.h>

/*
 * Temporary directories for tests: testdir_make() creates $TMPDIR/<name>.XXXXXX (or under
 * /tmp) into @buf and fails the test if it cannot; testdir_remove() deletes it with all it
 * holds, read-only entries included, without a shell.
 */
void testdir_make(char *buf, size_t size, const char *name);
void testdir_remove(const char *dir);

#endif
