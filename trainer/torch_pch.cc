// Empty on purpose: the unit torch_pch builds its precompiled <torch/torch.h>
// with (trainer/CMakeLists.txt), which the LibTorch targets reuse.
