#ifndef FLOODGATE_DAEMON_H
#define FLOODGATE_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "attrib.h"
#include "config.h"

/* Shared by floodgated's modes (main.c, replay.c, live.c). */

/*
 * Load the userdomains and localdomains files named by @cfg into new maps. A missing
 * file is a warning (owners stay unknown), a malformed line an error naming file and line.
 * Returns 0 and *ret (owned), or a negative errno.
 */
int daemon_maps_load(const struct config *cfg, const uint8_t key[SIPHASH_KEY_LEN],
                     struct attrib_maps **ret);

/* A random SipHash key from getrandom(). */
void daemon_random_key(uint8_t key[SIPHASH_KEY_LEN]);

struct preflight_report;

/* Print each preflight finding as one line ("error: key: path: what") to @f. */
void daemon_preflight_print(const struct preflight_report *r, FILE *f);

/*
 * Run the preflight checks for @cfg and log every finding (err or warning, naming the
 * key and path); @when says what is being checked ("start", "reload"). Returns the number
 * of errors: the caller refuses a config that has any.
 */
size_t daemon_preflight(const struct config *cfg, const char *when);

/* floodgated --replay: returns the process exit status. @html: write the report page
 * there (NULL: none). */
int replay_main(const struct config *cfg, char **files, int nfiles, bool json, const char *html);

/* The service: takes @cfg (a reload replaces and frees it); returns the exit status. */
int live_main(const char *config_path, struct config *cfg);

#endif
