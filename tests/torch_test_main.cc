// The main of the tests that link LibTorch: they run with freed host memory
// kept for reuse, as the trainer runs (trainer/learn/host_memory.h), which
// spares the tests that run the trainer's stages in process most of their
// page faults. Otherwise as gtest_main.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <iostream>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/learn/host_memory.h"

int main(int argc, char** argv) {
  testing::InitGoogleMock(&argc, argv);
  absl::StatusOr<std::string> memory = trainer::RetainFreedHostMemory();
  if (!memory.ok()) std::cerr << "host memory: " << memory.status() << "\n";
  return RUN_ALL_TESTS();
}
