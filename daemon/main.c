/*
 * main.c - floodgated: parse arguments, load the configuration, run one mode.
 *
 *   floodgated [--config FILE]                    the service (live.c)
 *   floodgated [--config FILE] --check-config     validate and exit 0/1
 *   floodgated [--config FILE] --replay LOG... [--json] [--html FILE]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "preflight.h"

#define MAIN_DEFAULT_CONFIG "/etc/floodgate/floodgate.yml"

static void
main_usage(FILE *f)
{
    fputs("usage: floodgated [--config FILE]                 run the service\n"
          "       floodgated [--config FILE] --check-config  validate the configuration\n"
          "       floodgated [--config FILE] --replay LOG... [--json] [--html FILE]\n"
          "                  replay finished logs (plain, .gz, or - for stdin)\n"
          "options:\n"
          "  -c, --config FILE   configuration (default " MAIN_DEFAULT_CONFIG ")\n"
          "  -n, --check-config  parse and validate the configuration, then exit\n"
          "  -r, --replay        treat the remaining arguments as logs to replay\n"
          "  -j, --json          replay: print one JSON object\n"
          "      --html FILE     replay: also write a report page (charts, evidence) to FILE\n"
          "  -v, --verbose       debug logging\n"
          "  -V, --version       print the version\n"
          "  -h, --help          this text\n",
          f);
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "check-config", no_argument, NULL, 'n' },
        { "replay", no_argument, NULL, 'r' },       { "json", no_argument, NULL, 'j' },
        { "verbose", no_argument, NULL, 'v' },      { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },         { "html", required_argument, NULL, 'H' },
        { NULL, 0, NULL, 0 },
    };
    const char *path = MAIN_DEFAULT_CONFIG;
    bool check = false, replay = false, json = false;
    const char *html = NULL;
    int prio = LOG_INFO, c, r;
    struct config *cfg = NULL;
    struct diag d;
    char msg[sizeof(d.file) + sizeof(d.msg) + 128];

    while ((c = getopt_long(argc, argv, "c:nrjvVh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'n':
            check = true;
            break;
        case 'r':
            replay = true;
            break;
        case 'j':
            json = true;
            break;
        case 'H':
            html = optarg;
            break;
        case 'v':
            prio = LOG_DEBUG;
            break;
        case 'V':
            puts("floodgated " FLOODGATE_VERSION);
            return 0;
        case 'h':
            main_usage(stdout);
            return 0;
        default:
            main_usage(stderr);
            return 2;
        }
    }
    if (((json || html) && !replay) || (replay && optind >= argc) || (!replay && optind < argc)) {
        fprintf(stderr, "floodgated: %s\n",
                replay ? "--replay needs at least one log file (or -)"
                : json ? "--json goes with --replay"
                : html ? "--html goes with --replay"
                       : "unexpected argument");
        main_usage(stderr);
        return 2;
    }
    log_setup(LOG_SINK_AUTO, prio);

    memset(&d, 0, sizeof(d));
    r = config_load(path, &cfg, &d);
    if (r < 0) {
        diag_format(&d, msg, sizeof(msg));
        fprintf(stderr, "floodgated: %s\n", msg);
        return 1;
    }
    if (check) {
        struct preflight_report pr = { 0 };
        preflight_run(cfg, &preflight_fs_real, &pr);
        daemon_preflight_print(&pr, stderr);
        if (pr.nerrors > 0) {
            fprintf(stderr, "%s: %zu error%s: floodgated will not run in %s mode like this\n",
                    path, pr.nerrors, pr.nerrors == 1 ? "" : "s",
                    cfg->mode == CONFIG_MODE_MONITOR ? "monitor" : "enforce");
            config_free(cfg);
            return 1;
        }
        printf("%s: ok (%zu rule%s, mode %s%s)\n", path, cfg->nrules, cfg->nrules == 1 ? "" : "s",
               cfg->mode == CONFIG_MODE_MONITOR ? "monitor" : "enforce",
               pr.n > 0 ? ", see the warnings" : "");
        config_free(cfg);
        return 0;
    }
    if (!replay)
        return live_main(path, cfg); /* takes cfg: a reload replaces it */
    r = replay_main(cfg, argv + optind, argc - optind, json, html);
    config_free(cfg);
    return r;
}
