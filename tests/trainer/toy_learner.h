// The toy set-up the pseudo-labelling objectives' tests share: one step's
// data of two-halves images (two_halves_images.h), a two-class model of
// width 4, and a Learner that trains a given objective on it.
#ifndef TESTS_TRAINER_TOY_LEARNER_H_
#define TESTS_TRAINER_TOY_LEARNER_H_

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <tuple>
#include <utility>

#include "absl/status/statusor.h"
#include "common/status_matchers.h"
#include "tests/trainer/two_halves_images.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/learner.h"
#include "trainer/learn/model.h"
#include "trainer/learn/objective.h"

namespace trainer {

// 16 labelled and `unlabelled` unlabelled two-halves images, the same on
// every call (generator seed 321).
inline StepData ToyStepData(int64_t unlabelled = 64) {
  at::Generator gen = *MakeGenerator(at::kCPU, 321);
  auto make = [&gen](int64_t n) { return MakeTwoHalvesImages(n, gen); };
  StepData data;
  std::tie(data.labelled_images, data.labelled_targets) = make(16);
  data.unlabelled_images = make(unlabelled).first;
  return data;
}

// A two-class model of width 4.
inline ModelOptions ToyModel() {
  ModelOptions options;
  options.width = 4;
  options.num_classes = 2;
  return options;
}

// A learner (100 total steps, `seed`) training the objective `made` on the
// CPU; `*raw` keeps a view of the objective. Null, with a test failure,
// when either is not made.
template <typename Objective>
std::unique_ptr<Learner> MakeToyLearner(
    absl::StatusOr<std::unique_ptr<Objective>> made, uint64_t seed,
    Objective** raw) {
  EXPECT_THAT(made, ::common::IsOk());
  if (!made.ok()) return nullptr;
  *raw = made->get();
  LearnerOptions options;
  options.total_steps = 100;
  options.seed = seed;
  auto learner =
      Learner::Create(ToyModel(), options, *std::move(made), at::kCPU);
  EXPECT_THAT(learner, ::common::IsOk());
  return learner.ok() ? *std::move(learner) : nullptr;
}

}  // namespace trainer

#endif  // TESTS_TRAINER_TOY_LEARNER_H_
