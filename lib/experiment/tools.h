/* tools.h: the single-stage tools an experiment's Makefile runs, found beside the running
 * `cb` (bin/ or build/VARIANT/bin/), each with the text of its --version, which goes into
 * the hash of every stage that runs it (a new build of a tool redoes its stages). */
#ifndef CB_EXPERIMENT_TOOLS_H
#define CB_EXPERIMENT_TOOLS_H

#include "core/error.h"

enum cb_tool_id { CB_TOOL_CB, CB_TOOL_TRAIN, CB_TOOL_VERIFY, CB_TOOL_BENCH, CB_TOOL_ARTIFACTS, CB_TOOL_GENERATE,
                  CB_TOOL_COUNT };

typedef struct cb_tools {
    char dir[4096];                     /* the folder holding them, absolute */
    char path[CB_TOOL_COUNT][4200];     /* absolute path of each */
    char version[CB_TOOL_COUNT][65];    /* sha256 of `TOOL --version`, "" until asked */
    signed char built[CB_TOOL_COUNT];   /* 1 built, 0 "not in this build", -1 not asked yet */
} cb_tools;

/* The tool's name ("cb-train"). */
const char *cb_tool_name(int tool);

/* Find the tools in dir (NULL: the folder of /proc/self/exe). A tool that is missing or
 * not executable is CB_E_USAGE naming it. */
int cb_tools_find(cb_tools *t, const char *dir, cb_error *e);

/* The hash of the tool's --version output (computed once). */
const char *cb_tools_version(cb_tools *t, int tool);

/* 1 when the tool does its work in this build; 0 when it answers that its capability is
 * not in this build (cb_cli_unbuilt), learnt by running it without arguments. */
int cb_tools_built(cb_tools *t, int tool);

#endif
