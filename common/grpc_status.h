// The one mapping between absl::Status and grpc::Status. Codes map one to one
// (both follow google.rpc.Code); messages are kept.
#ifndef COMMON_GRPC_STATUS_H_
#define COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace common {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace common

#endif  // COMMON_GRPC_STATUS_H_
