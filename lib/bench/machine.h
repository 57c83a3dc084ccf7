/* machine.h: the description of the machine a measurement ran on (docs/DESIGN.md section
 * 8): CPU model and features, threads, the BLAS and its kernels as `cb --version` reports
 * them (backend/cpu/blas.h), the OS, and the GPUs and driver where there are any. */
#ifndef CB_BENCH_MACHINE_H
#define CB_BENCH_MACHINE_H

#include <jansson.h>

/* {"cpu", "cpu_features", "logical_cpus", "threads", "blas", "os", "device", ["gpus",
 * "driver"]}. device: the backend the measurements run on ("cpu", "cuda"). The GPU members
 * are present only where an NVIDIA driver is loaded (/proc/driver/nvidia). */
json_t *cb_machine_describe(const char *device);

/* The "model name" of /proc/cpuinfo into buf (or "unknown"). */
void cb_machine_cpu_model(char *buf, int cap);

/* The driver's version in the first line of /proc/driver/nvidia/version, "NVRM version: NVIDIA
 * UNIX Open Kernel Module for x86_64  580.159.04  Release Build ...": the first word of digits
 * and dots after the colon. 0 when there is none. */
int cb_machine_nvidia_version(const char *line, char *buf, int cap);

#endif
