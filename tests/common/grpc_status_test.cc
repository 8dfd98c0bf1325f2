#include "common/grpc_status.h"

#include <gtest/gtest.h>

namespace common {
namespace {

TEST(GrpcStatusTest, EveryCodeRoundTripsDistinctly) {
  for (int code = 0; code <= 16; ++code) {
    absl::Status status(static_cast<absl::StatusCode>(code),
                        code == 0 ? "" : "message");
    grpc::Status grpc_status = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(grpc_status.error_code()), code);
    absl::Status back = FromGrpcStatus(grpc_status);
    EXPECT_EQ(back.code(), status.code());
    EXPECT_EQ(back.message(), status.message());
  }
}

TEST(GrpcStatusTest, KeepsSpecificCodes) {
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("3 left")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(absl::UnauthenticatedError("x")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("3 left")).error_message(),
            "3 left");
}

}  // namespace
}  // namespace common
