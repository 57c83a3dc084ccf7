/* test_machine.c: the machine description's parsing of what the kernel reports. */
#include "bench/machine.h"
#include "test.h"

/* machine.c: the driver version from /proc/driver/nvidia/version's first line, as an H100
 * machine's open kernel module and the proprietary one write it */
TEST(nvidia_driver_version_line) {
    char v[32];
    EXPECT(cb_machine_nvidia_version("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release "
                                     "Build  (nixbld@)  \n", v, sizeof v));
    EXPECT_EQ_STR("580.159.04", v);
    EXPECT(cb_machine_nvidia_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n",
                                     v, sizeof v));
    EXPECT_EQ_STR("535.104.05", v);
    EXPECT(!cb_machine_nvidia_version("NVRM version: unknown\n", v, sizeof v));
}
