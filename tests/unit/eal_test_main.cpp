// GoogleTest main for tests that need DPDK memory (rte_fib, rings, mbufs):
// starts the EAL without hugepages, PCI or shared config.
#include <gtest/gtest.h>
#include <rte_eal.h>

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    char prog[] = "sekisho-test";
    char a1[] = "--no-huge", a2[] = "-m", a3[] = "1024", a4[] = "--no-shconf", a5[] = "--no-pci",
         a6[] = "-l", a7[] = "0", a8[] = "--no-telemetry", a9[] = "--log-level=lib.eal:error";
    char* eal_argv[] = {prog, a1, a2, a3, a4, a5, a6, a7, a8, a9, nullptr};
    if (rte_eal_init(9, eal_argv) < 0) {
        fprintf(stderr, "EAL initialisation failed\n");
        return 1;
    }
    const int rc = RUN_ALL_TESTS();
    rte_eal_cleanup();
    return rc;
}
