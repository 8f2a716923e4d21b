/*
 * testdir.c - one way for every suite to make and remove its temporary directories.
 */
#include "testdir.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <check.h>

static int
testdir_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    (void)chmod(path, 0700); /* a test may have made it read-only */
    return remove(path);
}

void
testdir_make(char *buf, size_t size, const char *name)
{
    const char *base = getenv("TMPDIR");

    (void)snprintf(buf, size, "%s/%s.XXXXXX", base ? base : "/tmp", name);
    ck_assert_ptr_nonnull(mkdtemp(buf));
}

void
testdir_remove(const char *dir)
{
    if (dir && dir[0])
        (void)nftw(dir, testdir_rm, 16, FTW_DEPTH | FTW_PHYS);
}
